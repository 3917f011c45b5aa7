import { errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import type { Metrics } from '../common/metrics.ts';
import { ROUTER, unitName, type Unit } from './ownership.ts';
import { eventsEstimate, type MessageData } from './pipeline.ts';

/** A stream message as the processor handles it (a JetStream message satisfies it). */
export interface Msg extends MessageData {
  info: { timestampNanos: number; deliveryCount: number };
  ack(): void;
  /** Redelivered after `delayMs` (at once without). */
  nak(delayMs?: number): void;
  /** Keeps the message from redelivery a while longer. */
  working(): void;
}

/** A subscription to a unit's consumer: the messages as they come, until stopped. */
export interface Subscription extends AsyncIterable<Msg> {
  stop(): void;
}

/** Where a unit's messages come from (the JetStream consumers of the partitions and the router). */
export interface MessageSource {
  /** Consumes `unit`, with at most `maxBytes` delivered and not yet taken. */
  consume(unit: Unit, maxBytes: number): Promise<Subscription>;
  /** Messages not yet delivered, and delivered but not acknowledged. */
  pending(unit: Unit): Promise<{ pending: number; ackPending: number }>;
}

/** A partition (or the router) this processor consumes, while it owns it. */
export interface Feed {
  unit: Unit;
  messages: Subscription;
  loop: Promise<void>;
  active: boolean;
  /** When a message last arrived (or the subscription started): the stall watchdog's clock. */
  lastMessageAt: number;
}

export interface Queued {
  feed: Feed;
  m: Msg;
}

/** A subscription that delivered nothing for this long while its consumer has messages pending is restarted. */
const STALL_MS = 30_000;

/** The store is unavailable: the messages come back after a delay growing with their deliveries. */
export function retryLater(msgs: Msg[]): void {
  for (const x of msgs) x.nak(Math.min(30_000, 1_000 * 2 ** Math.min(x.info.deliveryCount, 5)));
}

export interface ConsumerOptions {
  partitions: number;
  fetchMessages: number;
  maxEvents: number;
  bufferBytes: number;
}

export interface ConsumerDeps {
  source: MessageSource;
  /** Handles a router message (moves it onto its partitions), acking or naking it. */
  route: (m: Msg) => Promise<void>;
  options: ConsumerOptions;
  log: Logger;
  metrics: Metrics;
  now: () => number;
  sleep: (ms: number) => Promise<void>;
}

/**
 * The consume side: one subscription per unit owned, resubscribing with backoff when one ends;
 * partitions' messages go into one bounded queue the batch loop takes from, the router's are
 * routed as they come. A watchdog reports what is pending and restarts stalled subscriptions.
 */
export class Consumer {
  private readonly feeds = new Map<Unit, Feed>();
  private readonly queue: Queued[] = [];
  private queueBytes = 0;
  private wakeLoop: (() => void) | undefined;
  private readonly spaceWaiters: (() => void)[] = [];
  private pendingTimer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: ConsumerDeps) {}

  /** Starts the watchdog (every 5 s). */
  start(): void {
    this.pendingTimer = setInterval(() => void this.reportPending(), 5_000);
    this.pendingTimer.unref();
  }

  stopWatchdog(): void {
    if (this.pendingTimer) clearInterval(this.pendingTimer);
  }

  /** Starts consuming a unit just taken. */
  async open(unit: Unit): Promise<void> {
    const feed: Feed = { unit, messages: await this.consume(unit), active: true, loop: Promise.resolve(), lastMessageAt: this.deps.now() };
    feed.loop = this.consumeLoop(feed);
    this.feeds.set(unit, feed);
  }

  /**
   * Stops consuming a unit given up, and sends the messages it queued back at once, for the next
   * owner. False if it was not consumed.
   */
  async close(unit: Unit): Promise<boolean> {
    const feed = this.feeds.get(unit);
    if (!feed) return false;
    feed.active = false;
    this.feeds.delete(unit);
    feed.messages.stop();
    this.releaseSpace();
    const waited = await Promise.race([feed.loop.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 10_000).unref())]);
    if (!waited) this.deps.log.warn({ unit: unitName(unit) }, 'a subscription did not end within 10 s of giving its partition up');
    // Messages taken but not yet in a batch go back at once, for the next owner.
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const q = this.queue[i]!;
      if (q.feed === feed) {
        this.queue.splice(i, 1);
        this.queueBytes -= q.m.data.length;
        q.m.nak();
      }
    }
    return true;
  }

  private async consume(unit: Unit): Promise<Subscription> {
    const { bufferBytes, partitions } = this.deps.options;
    // Bounded by bytes too: a few hundred large batch messages would otherwise overrun the
    // connection's pending limit (a slow consumer), stalling delivery until the pull expires.
    return this.deps.source.consume(unit, Math.max(256 * 1024, Math.floor(bufferBytes / Math.min(4, partitions))));
  }

  /**
   * Consumes while the unit is ours. If the subscription ends on its own (a NATS node died and
   * the consumer's leader moved, or the consumer was re-created), it consumes again, backing off.
   */
  private async consumeLoop(feed: Feed): Promise<void> {
    const { log } = this.deps;
    for (let attempt = 0; feed.active; ) {
      try {
        await this.drain(feed);
        if (!feed.active) return;
        log.warn({ unit: unitName(feed.unit) }, 'subscription ended; consuming again');
      } catch (err) {
        if (!feed.active) return;
        log.warn({ unit: unitName(feed.unit), err: errorMessage(err) }, 'subscription failed; consuming again');
      }
      await this.deps.sleep(Math.min(5_000, 250 * 2 ** Math.min(attempt++, 5)));
      if (!feed.active) return;
      try {
        const messages = await this.consume(feed.unit);
        if (!feed.active) {
          messages.stop();
          return;
        }
        feed.messages = messages;
        feed.lastMessageAt = this.deps.now();
        attempt = 0;
      } catch (err) {
        log.error({ unit: unitName(feed.unit), err: errorMessage(err) }, 'cannot consume; retrying');
      }
    }
  }

  /** Routes the router's messages; moves a partition's into the batch queue, waiting while the queue is full. */
  private async drain(feed: Feed): Promise<void> {
    for await (const m of feed.messages) {
      feed.lastMessageAt = this.deps.now();
      if (!feed.active) {
        m.nak();
        continue;
      }
      if (feed.unit === ROUTER) {
        await this.deps.route(m);
        continue;
      }
      this.queue.push({ feed, m });
      this.queueBytes += m.data.length;
      this.wakeLoop?.();
      while (feed.active && this.queueBytes > this.deps.options.bufferBytes) await new Promise<void>((r) => this.spaceWaiters.push(r));
    }
  }

  private releaseSpace(): void {
    for (const r of this.spaceWaiters.splice(0)) r();
  }

  /** Resolves once a message is queued (or `wake` is called). */
  async waitForMessages(): Promise<void> {
    if (this.queue.length > 0) return;
    await new Promise<void>((r) => (this.wakeLoop = r));
    this.wakeLoop = undefined;
  }

  /** Wakes the batch loop (to see that it is stopping). */
  wake(): void {
    this.wakeLoop?.();
  }

  get queued(): number {
    return this.queue.length;
  }

  /** True when the queue holds a full batch. */
  backlogged(): boolean {
    const { fetchMessages, maxEvents } = this.deps.options;
    if (this.queue.length >= fetchMessages) return true;
    let events = 0;
    for (const q of this.queue) if ((events += eventsEstimate(q.m)) >= maxEvents) return true;
    return false;
  }

  /** Takes the next batch off the queue, up to the batch limits. */
  takeBatch(): Queued[] {
    const batch: Queued[] = [];
    let events = 0;
    let bytes = 0;
    while (this.queue.length > 0 && batch.length < this.deps.options.fetchMessages && events < this.deps.options.maxEvents) {
      const q = this.queue.shift()!;
      batch.push(q);
      bytes += q.m.data.length;
      events += eventsEstimate(q.m);
    }
    this.queueBytes -= bytes;
    this.releaseSpace();
    return batch;
  }

  /**
   * Reports the messages pending for this processor, and restarts a subscription that has
   * stalled: after a NATS node died, a pull subscription was seen (in the fault suite, rarely)
   * to stay open yet deliver nothing while its consumer had messages pending.
   */
  private async reportPending(): Promise<void> {
    try {
      let pending = 0;
      for (const [unit, feed] of this.feeds) {
        const info = await this.deps.source.pending(unit);
        pending += info.pending;
        const idleMs = this.deps.now() - feed.lastMessageAt;
        if (feed.active && info.pending > 0 && info.ackPending === 0 && idleMs > STALL_MS && this.queueBytes <= this.deps.options.bufferBytes) {
          this.deps.log.warn({ unit: unitName(unit), pending: info.pending, idleSeconds: Math.round(idleMs / 1000) }, 'subscription delivers nothing while messages are pending; consuming again');
          feed.lastMessageAt = this.deps.now();
          feed.messages.stop();
        }
      }
      this.deps.metrics.processorConsumerPending.set(pending);
    } catch {
      /* NATS briefly away: the next tick reports */
    }
  }
}
