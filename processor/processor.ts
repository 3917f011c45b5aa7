import { headers as natsHeaders } from '@nats-io/transport-node';
import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import { ClickHouseError } from '@clickhouse/client';
import { stringify as losslessStringify } from 'lossless-json';
import type { CatalogReplica } from '../common/catalog.ts';
import type { Store } from '../common/clickhouse.ts';
import { errorMessage } from '../common/errors.ts';
import { parseExact, type ExactJson } from '../common/json-text.ts';
import { TimeSlice } from '../common/time-slice.ts';
import { MAINTENANCE_LEASE, type Leases } from '../common/lease.ts';
import type { Logger } from '../common/logger.ts';
import type { Metrics } from '../common/metrics.ts';
import { partitionConsumer, ROUTER_CONSUMER, type NatsClients } from '../common/nats.ts';
import { PARTITION_SQL, partitionOf } from '../common/partition.ts';
import { checkEvent, eventKey, parsedBatch, partitionMessages, RECEIVED_AT_HEADER, type TimeLimits, type UsageEvent } from '../ingest/index.ts';
import { Backfiller } from './backfill.ts';
import { DeadLetters, type DeadLetterEntry } from './dead-letter.ts';
import { DedupIndex, KEY_HASH_EXACT_SQL, STORED_KEY_PACKED_SQL } from './dedup.ts';
import { meterValues, type Meter, type MeterValue } from '../meter/index.ts';
import { Ownership, ROUTER, unitName, type Unit } from './ownership.ts';
import { insertRawRows, type RawRow } from './raw-rows.ts';
import { BackfillLedger, ledgerEntry, ledgerRows, WriteLedger, type LedgerEntry } from './write-ledger.ts';

const UTF8 = new TextDecoder();
/** Strict: bytes that are not UTF-8 are refused, never replaced (two distinct ids must not become one). */
const UTF8_STRICT = new TextDecoder('utf-8', { fatal: true });

/** Replaying a recorded insert rebuilds the events it held: the time limits were checked then. */
const NO_LIMITS: TimeLimits = { maxFutureMs: Number.POSITIVE_INFINITY, maxPastMs: Number.POSITIVE_INFINITY };


/** A partition whose writes keep failing for this long is reported stuck (`/readyz`, a metric). */
const STUCK_AFTER_MS = 60_000;

/**
 * True when ClickHouse refused the rows themselves (a value it cannot parse or store): retrying
 * cannot help, so such a message is eventually dead-lettered. Every other failure (the store
 * away, read-only, out of disk, too many parts, a timeout) is retried until the store is back.
 */
export function rejectsTheData(err: unknown): boolean {
  // By the error's type, not its class: the client's ClickHouseError may come from another copy of the module.
  const type = err instanceof ClickHouseError || (err instanceof Error && err.constructor.name === 'ClickHouseError') ? ((err as ClickHouseError).type ?? '') : '';
  return /^(CANNOT_PARSE|CANNOT_READ|CANNOT_CONVERT|INCORRECT_DATA|TYPE_MISMATCH|ILLEGAL_TYPE|ILLEGAL_COLUMN|VALUE_IS_OUT_OF_RANGE|DECIMAL_OVERFLOW|ARGUMENT_OUT_OF_BOUND|TOO_LARGE_|CANNOT_INSERT_NULL|INCORRECT_NUMBER_OF_COLUMNS|UNEXPECTED_END_OF_FILE|SIZES_OF_ARRAYS_DONT_MATCH|UNKNOWN_FORMAT_VERSION|BAD_ARGUMENTS|VIOLATED_CONSTRAINT)/.test(type);
}

export interface ProcessorOptions {
  dedupWindowMs: number;
  dedupMaxMemoryKeys: number;
  /** Bytes of dedup Bloom filters shared by all partitions (`DEDUP_FILTER_MEMORY`); 0 or unset: none. */
  dedupFilterBytes?: number;
  fetchMessages: number;
  maxEvents: number;
  bufferBytes: number;
  lateAfterMs: number;
  maxDeliveries: number;
  limits: TimeLimits;
  /** This processor's name among those sharing the partitions (default: host and pid). */
  processorId?: string;
  leaseTtlMs: number;
  /** After taking a partition over, fresh keys are also checked in the store for this long. */
  handoverVerifyMs?: number;
  /** A new meter's backfill runs again after this long, for batches that were in flight elsewhere. */
  backfillSettleMs?: number;
}

export interface ProcessorDeps {
  nats: NatsClients;
  store: Store;
  meters: CatalogReplica<Meter>;
  logger: Logger;
  metrics: Metrics;
  /** Backfills run under a lease, so two processors never backfill one meter at once. */
  leases: Leases;
  options: ProcessorOptions;
}

interface Candidate {
  partition: number;
  event: UsageEvent;
  key: string;
  seq: number;
  index: number;
  receivedAtMs: number;
  /** The event as parsed (numbers exact), for the dead-letter stream if no meter can count it. */
  raw: unknown;
  /** Parsed by lossless-json (its numbers are LosslessNumbers); otherwise by JSON.parse, exactly. */
  lossless: boolean;
}

interface Decoded {
  batch: Queued[];
  candidates: Candidate[];
  dead: DeadLetterEntry[];
}

interface Prepared {
  decoded: Decoded;
  rows: RawRow[];
  accepted: Candidate[];
  dead: DeadLetterEntry[];
  duplicates: number;
  /** The time of the dedup decisions: the rows' `ingested_at` and the keys' time in the index. */
  now: number;
  /** `Processor.metersVersion` when the meter values were computed. */
  metersVersion: number;
  /** The meters the values were computed with. */
  meters: Meter[];
}

const EMPTY: ReadonlySet<string> = new Set();

/** The `events_raw` row of an accepted event: a function of the event, so a replay rebuilds it exactly. */
function rawRow(c: Candidate, values: MeterValue[], ingestedAtMs: number): RawRow {
  return {
    source: c.event.source,
    id: c.event.id,
    type: c.event.type,
    subject: c.event.subject,
    time: c.event.timeMs,
    ingested_at: ingestedAtMs,
    received_at: c.receivedAtMs,
    data: (c.lossless ? losslessStringify(c.event.data) : JSON.stringify(c.event.data)) ?? '{}',
    stream_seq: c.seq,
    meter_values: values,
  };
}

/**
 * When a message was received: the header ingest and the router set, else the stream's timestamp
 * in nanoseconds (as the client reads it from the ack subject: `parseInt`, a double), in ms.
 */
function receivedAt(header: string | undefined, timestampNanos: number): number {
  return header ? Number(header) : Math.floor(timestampNanos / 1e6);
}

/** JetStream's stored-message time (RFC 3339 with nanoseconds) as the client's `timestampNanos` would read it. */
export function storedTimestampNanos(ts: string): number {
  const m = /^(.*?)(?:\.(\d+))?Z$/.exec(ts);
  const nanos = m ? BigInt(Date.parse(`${m[1]}Z`)) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0').slice(0, 9)) : BigInt(Date.parse(ts)) * 1_000_000n;
  return parseInt(nanos.toString(), 10);
}

/** A cheap estimate of the events in a message (about 200 bytes each), to bound a batch without parsing twice. */
const eventsEstimate = (m: JsMsg) => 1 + Math.floor(m.data.length / 200);

/** A partition (or the router) this processor consumes, while it owns it. */
interface Feed {
  unit: Unit;
  messages: ConsumerMessages;
  loop: Promise<void>;
  active: boolean;
  /** When a message last arrived (or the subscription started): the stall watchdog's clock. */
  lastMessageAt: number;
}

/** A subscription that delivered nothing for this long while its consumer has messages pending is restarted. */
const STALL_MS = 30_000;

interface Queued {
  feed: Feed;
  m: JsMsg;
}

/** An event the store refused, by its position in the insert's rows. */
interface Refused {
  at: number;
  err: unknown;
}

/**
 * Consumes the event stream and writes exact rows to ClickHouse.
 *
 * The stream is split into partitions by a hash of `(source, id)` (common/partition.ts); every
 * copy of an event is in the same partition. Processors share the partitions through leases
 * (`Ownership`): each partition is consumed by one processor at a time, which keeps a dedup
 * index of that partition's keys. One processor also holds the router: events published on
 * free-form subjects are moved onto their partitions' subjects (idempotently, by message id).
 *
 * The messages of every partition owned go through one batch loop; for each batch the order
 * of effects is what carries the guarantees:
 *
 * 1. decode and validate every event; invalid ones are set aside for the dead-letter stream;
 * 2. drop duplicates of `(source, id)`: within the batch, in the partition's memory index, and
 *    (when memory does not cover the window: after a restart, a take-over, a failed insert) in
 *    `event_keys`;
 * 3. compute each meter's value; an event no meter can count goes to the dead-letter stream;
 * 4. check the leases are still held (a processor that lost one writes nothing for it) and that
 *    no repair holds the maintenance lease;
 * 5. record in the write ledger (NATS KV, write-ledger.ts) how to rebuild the batch's rows exactly;
 * 6. one INSERT into `events_raw` (the materialized views fan it out to `event_keys`,
 *    `meter_values` and the rollups), with a deterministic deduplication token, repeated
 *    identically until it lands; events the store refuses are found by halving and dead-lettered;
 * 7. clear the ledger entry; record the keys in memory, park dead letters;
 * 8. ack the messages.
 *
 * Steps 1 to 3 of the next batch run while the previous one is in steps 4 to 8 (its insert runs
 * on ClickHouse's threads); the keys of the batch being written count as stored for it, and
 * writes happen one at a time, in order.
 *
 * A crash before 6 starts redelivers the batch and nothing was written (if its ledger entry was
 * recorded, the next owner inserts the batch from it first, and the redeliveries are duplicates).
 * ClickHouse commits the insert table by table, so a crash
 * during 6 can leave `events_raw` with the batch and `meter_values` or a rollup without it. Whoever
 * owns the partition next (this process after a restart, or another) first repeats every ledger
 * entry naming the partition: same rows, same token, and every table skips the blocks it has and
 * writes the ones it lacks. Only then does it load the partition's keys and consume, so the
 * redelivered events are duplicates in every table alike. A crash between 7 and 8 redelivers
 * events that are stored everywhere: dropped as duplicates. Rows are never counted twice, never
 * missing from a view, and an event is never acked before it is stored or parked.
 */
export class Processor {
  private readonly indexes = new Map<number, DedupIndex>();
  private readonly verifyUntil = new Map<number, number>();
  private readonly feeds = new Map<Unit, Feed>();
  private readonly queue: Queued[] = [];
  private queueBytes = 0;
  private wakeLoop: (() => void) | undefined;
  private readonly spaceWaiters: (() => void)[] = [];
  private readonly deadLetters: DeadLetters;
  private backfiller!: Backfiller;
  private readonly log: Logger;
  private ownership: Ownership | undefined;
  private loop: Promise<void> | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private pendingTimer: NodeJS.Timeout | undefined;
  private readonly backfillTimers = new Set<NodeJS.Timeout>();
  private stopping = false;
  /** Counts meter changes: a batch whose values were computed before one is computed again. */
  private metersVersion = 0;
  private failure: unknown;
  private unsubscribe: (() => void) | undefined;
  private ledger: WriteLedger | undefined;
  /** Partitions whose current write keeps failing, since when and why. */
  private readonly failingSince = new Map<Unit, { sinceMs: number; reason: string }>();

  constructor(private readonly deps: ProcessorDeps) {
    this.log = deps.logger.child({ component: 'processor' });
    this.deadLetters = new DeadLetters(deps.nats);
  }

  private get partitions(): number {
    return this.deps.nats.topology.partitions;
  }

  async start(): Promise<void> {
    const { options } = this.deps;
    this.backfiller = new Backfiller(this.deps.store, this.log, await BackfillLedger.open(this.deps.nats.js, this.deps.nats.topology.replicas), () => this.waitForMaintenance([]));
    // A meter created while we run is backfilled between batches, on the same serial chain as
    // the batches, so no event is both in flight here without it and missed by the backfill;
    // a second pass after a settle time catches batches that were in flight in other processors.
    this.unsubscribe = this.deps.meters.onChange((_key, next, prev) => {
      this.metersVersion++;
      if (next && next.id !== prev?.id) this.backfill(next, true);
    });
    await this.serial(() => this.backfillPending(this.deps.meters.list()));
    this.loop = this.run().catch((err: unknown) => this.fail(err));
    this.ownership = await Ownership.open(
      this.deps.nats.js,
      { holder: options.processorId, partitions: this.partitions, ttlMs: options.leaseTtlMs, replicas: this.deps.nats.topology.replicas },
      { acquired: (u) => this.acquired(u), released: (u, reason) => this.released(u, reason) },
      this.log,
    );
    this.ledger = await WriteLedger.open(this.deps.nats.js, this.ownership.holder, this.deps.nats.topology.replicas);
    await this.ownership.start();
    this.pendingTimer = setInterval(() => void this.reportPending(), 5_000);
    this.pendingTimer.unref();
    this.log.info({ processor: this.ownership.holder, partitions: this.ownership.partitions() }, 'processor started');
  }

  /** This processor's name among those sharing partitions. */
  get id(): string | undefined {
    return this.ownership?.holder;
  }

  /** The partitions this processor owns now. */
  ownedPartitions(): number[] {
    return this.ownership?.partitions() ?? [];
  }

  /** False once a consume loop has died; `/readyz` reports it. */
  get healthy(): boolean {
    return this.failure === undefined;
  }

  /** Stops taking messages, finishes the batch in flight, hands the partitions back, then returns. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.unsubscribe?.();
    for (const t of this.backfillTimers) clearTimeout(t);
    if (this.pendingTimer) clearInterval(this.pendingTimer);
    await this.ownership?.stop();
    this.wakeLoop?.();
    await this.loop;
    await this.chain;
  }

  private fail(err: unknown): void {
    // A consumer is gone (e.g. deleted by an operator): nothing is acked any more, so no event
    // is lost, but this process no longer makes progress. It hands its partitions back so the
    // other processors take them, and readiness and liveness report it (an orchestrator restarts it).
    if (this.failure !== undefined) return;
    this.failure = err;
    this.log.fatal({ err }, 'processor stopped consuming; its partitions are handed to the other processors; restart the process');
    void this.ownership?.stop().catch(() => undefined);
  }

  private serial<T>(task: () => Promise<T>): Promise<T> {
    const next = this.chain.then(task, task);
    this.chain = next.catch((err) => this.log.error({ err }, 'processor task failed'));
    return next;
  }

  // ---- ownership ---------------------------------------------------------------------------

  private async acquired(unit: Unit): Promise<void> {
    if (unit !== ROUTER) {
      // A write cut off half-way (a crash, a lost lease) is completed before anything else of the
      // partition is read: its keys are then in `event_keys` and every table has its rows.
      const replayed = await this.replayLedger(unit);
      await this.loadDedupIndex(unit);
      // Their rows keep the `ingested_at` of the first attempt, which may be older than the dedup
      // window (a restart days later): the redelivered copies are duplicates all the same.
      this.index(unit).add(replayed, Date.now());
      // The previous owner's last insert may land after the load (it was in flight when it died):
      // until its messages have been redelivered, fresh keys are checked in the store too.
      this.verifyUntil.set(unit, Date.now() + (this.deps.options.handoverVerifyMs ?? 90_000));
    }
    const feed: Feed = { unit, messages: await this.consume(unit), active: true, loop: Promise.resolve(), lastMessageAt: Date.now() };
    feed.loop = this.consumeLoop(feed);
    this.feeds.set(unit, feed);
  }

  private async consume(unit: Unit): Promise<ConsumerMessages> {
    const name = unit === ROUTER ? ROUTER_CONSUMER : partitionConsumer(unit);
    const consumer = await this.deps.nats.js.consumers.get(this.deps.nats.topology.stream, name);
    // Bounded by bytes too: a few hundred large batch messages would otherwise overrun the
    // connection's pending limit (a slow consumer), stalling delivery until the pull expires.
    const maxBytes = Math.max(256 * 1024, Math.floor(this.deps.options.bufferBytes / Math.min(4, this.partitions)));
    return consumer.consume({ max_bytes: maxBytes });
  }

  /**
   * Consumes while the unit is ours. If the subscription ends on its own (a NATS node died and
   * the consumer's leader moved, or the consumer was re-created), it consumes again, backing off.
   */
  private async consumeLoop(feed: Feed): Promise<void> {
    for (let attempt = 0; feed.active; ) {
      try {
        await (feed.unit === ROUTER ? this.route(feed) : this.feed(feed));
        if (!feed.active) return;
        this.log.warn({ unit: unitName(feed.unit) }, 'subscription ended; consuming again');
      } catch (err) {
        if (!feed.active) return;
        this.log.warn({ unit: unitName(feed.unit), err: errorMessage(err) }, 'subscription failed; consuming again');
      }
      await new Promise((r) => setTimeout(r, Math.min(5_000, 250 * 2 ** Math.min(attempt++, 5))));
      if (!feed.active) return;
      try {
        const messages = await this.consume(feed.unit);
        if (!feed.active) {
          messages.stop();
          return;
        }
        feed.messages = messages;
        feed.lastMessageAt = Date.now();
        attempt = 0;
      } catch (err) {
        this.log.error({ unit: unitName(feed.unit), err: errorMessage(err) }, 'cannot consume; retrying');
      }
    }
  }

  private async released(unit: Unit, reason: 'lost' | 'handover' | 'stop'): Promise<void> {
    const feed = this.feeds.get(unit);
    if (!feed) return;
    feed.active = false;
    this.feeds.delete(unit);
    feed.messages.stop();
    this.releaseSpace();
    const waited = await Promise.race([feed.loop.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 10_000).unref())]);
    if (!waited) this.log.warn({ unit: unitName(unit) }, 'a subscription did not end within 10 s of giving its partition up');
    // Messages taken but not yet in a batch go back at once, for the next owner.
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const q = this.queue[i]!;
      if (q.feed === feed) {
        this.queue.splice(i, 1);
        this.queueBytes -= q.m.data.length;
        q.m.nak();
      }
    }
    // Handing over: the batch in flight finishes (and is acked) before the lease is given back.
    if (reason !== 'lost') await this.chain;
    this.indexes.delete(unit);
    this.verifyUntil.delete(unit);
    this.deps.metrics.processorDedupKeys.set(this.dedupKeys());
  }

  private dedupKeys(): number {
    let n = 0;
    for (const ix of this.indexes.values()) n += ix.size;
    return n;
  }

  // ---- consuming ---------------------------------------------------------------------------

  /** Moves a partition's messages into the batch queue, waiting while the queue is full. */
  private async feed(feed: Feed): Promise<void> {
    for await (const m of feed.messages) {
      feed.lastMessageAt = Date.now();
      if (!feed.active) {
        m.nak();
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

  /**
   * The batch loop: takes what the partitions delivered, up to the batch limits, and handles it.
   * While one batch is being written (its insert runs on ClickHouse's threads), the next one is
   * decoded, deduplicated and given its meter values on this thread, when enough is queued to
   * fill it. Writes are in order, one at a time, on the serial chain.
   */
  private async run(): Promise<void> {
    let writing: Promise<void> = Promise.resolve();
    let writingKeys: ReadonlySet<string> = EMPTY;
    while (!this.stopping) {
      if (this.queue.length === 0) {
        await new Promise<void>((r) => (this.wakeLoop = r));
        this.wakeLoop = undefined;
        continue;
      }
      // Not backlogged: let the batch in flight finish first, so the next one gathers more.
      if (!this.backlogged()) await writing;
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
      const live = batch.filter((q) => q.feed.active);
      if (live.length === 0) continue;
      const prepared = await this.prepare(await this.decode(live), writingKeys);
      await writing;
      if (!prepared) continue;
      const keys = new Set(prepared.accepted.map((c) => c.key));
      writingKeys = keys;
      writing = this.serial(() => this.write(prepared))
        .catch((err: unknown) => {
          // Something failed after the checks (e.g. parking a dead letter while NATS is away):
          // the batch comes back later; its stored events are duplicates by then.
          this.log.error({ err: errorMessage(err), messages: live.length }, 'batch failed; messages will be redelivered');
          this.retryLater(live.map((q) => q.m));
          return false;
        })
        .then((stored) => {
          // Not stored: its messages come back, and their events must not be taken for duplicates.
          if (!stored && writingKeys === keys) writingKeys = EMPTY;
        });
    }
    await writing;
  }

  /** True when the queue holds a full batch. */
  private backlogged(): boolean {
    const { fetchMessages, maxEvents } = this.deps.options;
    if (this.queue.length >= fetchMessages) return true;
    let events = 0;
    for (const q of this.queue) if ((events += eventsEstimate(q.m)) >= maxEvents) return true;
    return false;
  }

  /**
   * The router: events published on free-form subjects go to their partitions' subjects, one
   * message per partition, with a message id made of the source message's sequence, so a
   * redelivered message is stored once (and the partition's dedup would drop it anyway).
   */
  private async route(feed: Feed): Promise<void> {
    const { nats } = this.deps;
    for await (const m of feed.messages) {
      feed.lastMessageAt = Date.now();
      if (!feed.active) {
        m.nak();
        continue;
      }
      let parts: { partition: number; part: string; data: string | Uint8Array }[];
      try {
        // Only `source` and `id` are read here (strings): JSON.parse suffices, and the events
        // move on as their texts, byte for byte. Bytes that are not UTF-8 are never decoded with
        // replacement characters (two distinct ids would become one).
        const text = UTF8_STRICT.decode(m.data);
        const limit = (nats.nc.info?.max_payload ?? 1024 * 1024) - 1024;
        parts = partitionMessages(text, parsedBatch(text, JSON.parse(text)), this.partitions, limit);
      } catch {
        parts = [{ partition: 0, part: '', data: m.data }]; // malformed: partition 0's owner dead-letters it, bytes as they came, with the reason
      }
      const h = natsHeaders();
      const received = m.headers?.get(RECEIVED_AT_HEADER);
      h.set(RECEIVED_AT_HEADER, received || String(Math.floor(Number(m.info.timestampNanos) / 1e6)));
      try {
        await Promise.all(parts.map(({ partition, part, data }) => nats.js.publish(nats.partitionSubject(partition), data, { msgID: `route:${nats.topology.stream}:${m.seq}@${partition}${part}`, headers: h })));
        m.ack();
      } catch (err) {
        this.log.warn({ err: errorMessage(err), seq: m.seq }, 'could not route a message onto partitions; it will be redelivered');
        m.nak(2_000);
      }
    }
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
        const info = await this.deps.nats.jsm.consumers.info(this.deps.nats.topology.stream, unit === ROUTER ? ROUTER_CONSUMER : partitionConsumer(unit));
        pending += info.num_pending;
        const idleMs = Date.now() - feed.lastMessageAt;
        if (feed.active && info.num_pending > 0 && info.num_ack_pending === 0 && idleMs > STALL_MS && this.queueBytes <= this.deps.options.bufferBytes) {
          this.log.warn({ unit: unitName(unit), pending: info.num_pending, idleSeconds: Math.round(idleMs / 1000) }, 'subscription delivers nothing while messages are pending; consuming again');
          feed.lastMessageAt = Date.now();
          feed.messages.stop();
        }
      }
      this.deps.metrics.processorConsumerPending.set(pending);
    } catch {
      /* NATS briefly away: the next tick reports */
    }
  }

  // ---- backfill ----------------------------------------------------------------------------

  private async backfillPending(meters: Meter[]): Promise<void> {
    const pending = await this.backfiller.pending(meters);
    for (const m of pending) this.backfill(m, false);
  }

  /**
   * Backfills `meter` under a lease (one processor at a time), on this processor's serial chain;
   * a meter created just now gets a second pass after the settle time.
   */
  private backfill(meter: Meter, fresh: boolean): void {
    const pass = (final: boolean): Promise<void> =>
      this.serial(async () => {
        const r = await this.deps.leases.withLease(`backfill.${meter.id}`, () => this.backfiller.run(meter, { record: final }), this.log);
        if (!r.ran && final) this.later(() => pass(true), 5_000); // someone else is on it: look again later
      }).catch((err: unknown) => {
        // The store or NATS is away: the final pass runs again later (it skips what is counted).
        this.log.error({ err: errorMessage(err), meter: meter.slug }, 'backfill failed; retrying in 30 s');
        this.later(() => pass(true), 30_000);
      });
    if (!fresh) {
      void pass(true);
      return;
    }
    void pass(false).then(() => this.later(() => pass(true), this.deps.options.backfillSettleMs ?? 60_000));
  }

  private later(fn: () => unknown, ms: number): void {
    if (this.stopping) return;
    const t = setTimeout(() => {
      this.backfillTimers.delete(t);
      if (!this.stopping) void fn();
    }, ms);
    t.unref();
    this.backfillTimers.add(t);
  }

  // ---- dedup -------------------------------------------------------------------------------

  private index(partition: number): DedupIndex {
    let ix = this.indexes.get(partition);
    if (!ix) {
      ix = new DedupIndex(this.deps.options.dedupWindowMs, this.perPartitionKeys(), 0, { filterBytes: this.perPartitionFilterBytes() });
      this.indexes.set(partition, ix);
    }
    return ix;
  }

  /** The memory budget of keys is shared by the partitions: a partition gets its slice. */
  private perPartitionKeys(): number {
    return Math.max(1_000, Math.floor(this.deps.options.dedupMaxMemoryKeys / this.partitions));
  }

  /** So is the budget of Bloom filters (`DEDUP_FILTER_MEMORY`). */
  private perPartitionFilterBytes(): number {
    return Math.floor((this.deps.options.dedupFilterBytes ?? 0) / this.partitions);
  }

  /**
   * Loads a partition's dedup index from `event_keys`: the window's newest keys, up to the map's
   * budget, into the map and the filters. If those were all of the window's keys, both cover it
   * at once; otherwise every key of the window is loaded into the filters in the background
   * (`loadDedupFilters`), and until that is done fresh keys are looked up in the store.
   */
  private async loadDedupIndex(partition: number): Promise<void> {
    const { ch, db } = this.deps.store;
    const now = Date.now();
    const from = now - this.deps.options.dedupWindowMs;
    const limit = this.perPartitionKeys();
    const rs = await ch.query({
      query: `SELECT source, id, toUnixTimestamp64Milli(ingested_at) AS at FROM ${db}.event_keys
              WHERE ingested_at >= fromUnixTimestamp64Milli({from:Int64}) AND ${PARTITION_SQL} = {partition:UInt32}
              ORDER BY ingested_at DESC LIMIT {limit:UInt64}`,
      query_params: { from, limit, partitions: this.partitions, partition },
      format: 'JSONCompactEachRow',
    });
    const rows = await rs.json<[string, string, string]>();
    const entries: [string, number][] = rows.reverse().map(([source, id, at]) => [eventKey({ source, id }), Number(at)]);
    const full = rows.length < limit;
    const ix = new DedupIndex(this.deps.options.dedupWindowMs, limit, now, { filterBytes: this.perPartitionFilterBytes() });
    ix.load(entries, full ? 0 : (entries[0]?.[1] ?? now), now);
    this.indexes.set(partition, ix);
    this.deps.metrics.processorDedupKeys.set(this.dedupKeys());
    if (!full && ix.hasFilters) {
      void this.loadDedupFilters(partition, ix, from, now).catch((err: unknown) => {
        if (this.indexes.get(partition) !== ix || this.stopping) return;
        // Exactness does not depend on it: fresh keys of this partition keep going to the store.
        this.log.warn({ partition, err: errorMessage(err) }, 'could not load the dedup filters; fresh keys are looked up in the store');
      });
    }
  }

  /**
   * Fills a partition's filters with every key of the window in `event_keys`, a page at a time
   * in primary-key order (each page reads on from the last key of the previous one). ClickHouse
   * hashes the keys, so a key travels as 16 bytes (hex in JSON), not as its strings. Keys
   * inserted meanwhile by a previous owner are covered by `verifyUntil` (see `acquired`), keys
   * accepted here meanwhile are added as they are. Stops if the partition is given up.
   */
  private async loadDedupFilters(partition: number, ix: DedupIndex, from: number, now: number): Promise<void> {
    const { ch, db } = this.deps.store;
    // A page holds at most the map's budget of keys (the memory already granted to keys), or a million.
    const page = Math.min(1_000_000, this.perPartitionKeys());
    const t0 = performance.now();
    let keys = 0;
    let after: { s: string; i: string } | undefined;
    for (;;) {
      const rs = await ch.query({
        query: `SELECT count(), hex(max((source, id)).1), hex(max((source, id)).2),
                       arrayStringConcat(groupArrayIf(${STORED_KEY_PACKED_SQL}, ${KEY_HASH_EXACT_SQL})),
                       groupArrayIf((source, id, toUnixTimestamp64Milli(ingested_at)), NOT ${KEY_HASH_EXACT_SQL})
                FROM (SELECT source, id, ingested_at FROM ${db}.event_keys
                      WHERE ingested_at >= fromUnixTimestamp64Milli({from:Int64}) AND ${PARTITION_SQL} = {partition:UInt32}
                        ${after ? 'AND (source > unhex({s:String}) OR (source = unhex({s:String}) AND id > unhex({i:String})))' : ''}
                      ORDER BY source, id LIMIT {page:UInt64})`,
        query_params: { from, page, partitions: this.partitions, partition, ...after },
        format: 'JSONCompactEachRow',
      });
      const [row] = await rs.json<[string, string, string, string, [string, string, string][]]>();
      if (this.indexes.get(partition) !== ix || this.stopping) return;
      const [count, lastSource, lastId, packed, others] = row ?? ['0', '', '', '', []];
      keys += ix.loadPacked(Buffer.from(packed, 'hex'), now);
      for (const [source, id, at] of others) ix.loadKey(eventKey({ source, id }), Number(at), now);
      keys += others.length;
      if (Number(count) < page) break;
      after = { s: lastSource, i: lastId };
    }
    ix.filtersCompleteFrom(from);
    const seconds = (performance.now() - t0) / 1000;
    const stats = ix.filterStats(Date.now());
    this.log.info(
      { partition, keys, seconds: Math.round(seconds * 10) / 10, secondsPerMillionKeys: keys > 0 ? Math.round((seconds / keys) * 1e7) / 10 : 0, filterMiB: Math.round((stats?.bytes ?? 0) / 2 ** 20), expectedFpr: stats?.expectedFpr },
      'dedup filters loaded: they cover the window',
    );
  }

  private needsStoreCheck(partition: number, key: string, now: number): boolean {
    return now < (this.verifyUntil.get(partition) ?? 0) || this.index(partition).needsStoreLookup(key, now);
  }

  // ---- a batch -----------------------------------------------------------------------------

  /** Step 1, pure CPU work: decode and validate every event of the batch. */
  private async decode(batch: Queued[]): Promise<Decoded> {
    const { options } = this.deps;
    const dead: DeadLetterEntry[] = [];
    const candidates: Candidate[] = [];
    const slice = new TimeSlice();
    for (const { feed, m } of batch) {
      if (slice.due()) await slice.pause();
      const partition = feed.unit;
      const receivedAtMs = receivedAt(m.headers?.get(RECEIVED_AT_HEADER), Number(m.info.timestampNanos));
      let parsed: ExactJson;
      let text: string;
      try {
        text = UTF8_STRICT.decode(m.data);
      } catch {
        dead.push(this.deadLetter('the message is not valid UTF-8: send events as UTF-8 JSON', m.seq, -1, receivedAtMs, UTF8.decode(m.data)));
        continue;
      }
      try {
        parsed = parseExact(text);
      } catch (err) {
        dead.push(this.deadLetter(`malformed JSON: ${errorMessage(err)}`, m.seq, -1, receivedAtMs, text));
        continue;
      }
      let texts: string[] | undefined;
      parsed.items.forEach((item, index) => {
        const r = checkEvent(item, receivedAtMs, options.limits);
        if (r.ok) candidates.push({ partition, event: r.event, key: eventKey(r.event), seq: m.seq, index, receivedAtMs, raw: item, lossless: parsed.lossless[index]! });
        // Parked as received: re-serialising an event refused for its depth could overflow the stack.
        else dead.push(this.deadLetter(r.errors.map((e) => (e.field ? `${e.field}: ${e.reason}` : e.reason)).join('; '), m.seq, index, receivedAtMs, (texts ??= parsed.texts())[index]!));
      });
    }
    return { batch, candidates, dead };
  }

  /**
   * Steps 2 and 3: dedup and meter values; `undefined` if the batch went back (the store's
   * dedup look-up failed). `writing` holds the keys of the batch being written meanwhile: they
   * count as stored (if that write fails, its messages come back, carrying those events).
   */
  private async prepare(decoded: Decoded, writing: ReadonlySet<string>): Promise<Prepared | undefined> {
    const { metrics, options } = this.deps;
    const { batch, candidates } = decoded;
    const dead = [...decoded.dead];
    const metersVersion = this.metersVersion;

    // 2. exact dedup, per partition
    const now = Date.now();
    const inBatch = new Set<string>();
    let fresh: Candidate[] = [];
    const slice = new TimeSlice();
    for (const c of candidates) {
      if (slice.due()) await slice.pause();
      if (inBatch.has(c.key) || writing.has(c.key) || this.index(c.partition).has(c.key, now)) continue;
      inBatch.add(c.key);
      fresh.push(c);
    }
    const toCheck = fresh.filter((c) => this.needsStoreCheck(c.partition, c.key, now));
    if (toCheck.length > 0) {
      let stored: Set<string>;
      try {
        stored = await this.storedKeys(toCheck, now - options.dedupWindowMs);
      } catch (err) {
        this.log.error({ err: errorMessage(err), messages: batch.length }, 'dedup look-up in the store failed; messages will be redelivered');
        this.retryLater(batch.map((q) => q.m));
        return undefined;
      }
      metrics.processorStoreLookups.inc(toCheck.length);
      fresh = fresh.filter((c) => !stored.has(c.key));
    }

    // 3. meter values
    const meters = this.deps.meters.list();
    const rows: RawRow[] = [];
    const accepted: Candidate[] = [];
    for (const c of fresh) {
      if (slice.due()) await slice.pause();
      const mv = meterValues(c.event, meters);
      if (!mv.ok) {
        dead.push(this.deadLetter(mv.reason, c.seq, c.index, c.receivedAtMs, losslessStringify(c.raw) ?? 'null'));
        continue;
      }
      accepted.push(c);
      rows.push(rawRow(c, mv.values, now));
    }
    return { decoded, rows, accepted, dead, duplicates: candidates.length - fresh.length, now, metersVersion, meters };
  }

  /**
   * Steps 4 to 6: the fence, the ledger, one insert, then remember keys and park dead letters,
   * then ack. On the serial chain. True when the batch's accepted events were stored (their keys
   * are in the index) or parked; false when its messages go back.
   */
  private async write(prepared: Prepared): Promise<boolean> {
    const { metrics, options } = this.deps;
    // A meter changed since the batch was prepared: its values are computed again (and its
    // backfill, on this chain, has run before or runs after this insert).
    const p = prepared.metersVersion === this.metersVersion ? prepared : await this.prepare(prepared.decoded, EMPTY);
    if (!p) return false;
    const { batch } = p.decoded;
    const { rows, dead, now } = p;
    const msgs = batch.map((q) => q.m);
    const units = [...new Set(batch.map((q) => q.feed.unit))];
    // `meterline repair` holds the maintenance lease while it rewrites rows: nothing is written meanwhile.
    await this.waitForMaintenance(msgs);
    const lost = units.filter((u) => !this.ownership?.holds(u));
    if (lost.length > 0) {
      // A partition's lease lapsed while the batch was prepared: another processor may own it
      // now. Write nothing; the messages go back to whoever owns their partitions.
      this.log.warn({ units: lost.map(unitName) }, 'lease not held at insert time; batch handed back');
      for (const m of msgs) m.nak();
      return false;
    }
    let accepted = p.accepted;
    if (rows.length > 0) {
      const token = `${this.deps.nats.topology.stream}:${Math.min(...msgs.map((m) => m.seq))}-${Math.max(...msgs.map((m) => m.seq))}:${rows.length}`;
      const types = new Set(rows.map((r) => r.type));
      const entry = ledgerEntry(token, units, now, p.meters.filter((m) => types.has(m.eventType)), accepted);
      // The ledger first: from here on, a crash anywhere leaves the next owner what it needs to
      // repeat this exact insert (see write-ledger.ts). If NATS cannot record it, nothing is written.
      const slot = await this.ledger!.record(entry);
      let refused: Refused[];
      try {
        refused = await this.land(rows, token, units, msgs, () => batch.every((q) => q.feed.active));
      } catch (err) {
        // Given up unlanded (the partition lost, or stopping): the entry stays for the next owner,
        // and until redeliveries are through fresh keys are checked against the store as well.
        this.ledger!.keep(slot);
        for (const u of units) this.verifyUntil.set(u, Math.max(this.verifyUntil.get(u) ?? 0, now + 5 * 60_000));
        this.log.error({ err: errorMessage(err), messages: batch.length }, 'insert not landed; messages will be redelivered');
        this.retryLater(msgs);
        return false;
      }
      await this.ledger!.clear(slot);
      if (refused.length > 0) {
        const out = new Set(refused.map((r) => r.at));
        for (const r of refused) {
          const c = accepted[r.at]!;
          dead.push(this.deadLetter(`store rejected the event: ${errorMessage(r.err)}`, c.seq, c.index, c.receivedAtMs, losslessStringify(c.raw) ?? 'null'));
        }
        accepted = accepted.filter((_c, i) => !out.has(i));
      }
    }
    const byPartition = new Map<number, string[]>();
    let late = 0;
    for (const c of accepted) {
      let keys = byPartition.get(c.partition);
      if (!keys) byPartition.set(c.partition, (keys = []));
      keys.push(c.key);
      if (now - c.event.timeMs > options.lateAfterMs) late++;
    }
    metrics.processorLateEvents.inc(late);
    const slice = new TimeSlice(4, 1);
    for (const [partition, keys] of byPartition) {
      for (let i = 0; i < keys.length; i += 1_000) {
        if (slice.due()) await slice.pause();
        this.index(partition).add(keys.slice(i, i + 1_000), now);
      }
    }
    metrics.processorDedupKeys.set(this.dedupKeys());
    await this.parkAll(dead);
    metrics.processorDuplicates.inc(p.duplicates);
    metrics.processorEvents.inc({ outcome: 'stored' }, accepted.length);
    metrics.processorEvents.inc({ outcome: 'duplicate' }, p.duplicates);
    metrics.processorEvents.inc({ outcome: 'dead_lettered' }, dead.length);
    for (const m of msgs) m.ack();
    return true;
  }

  private async parkAll(dead: DeadLetterEntry[]): Promise<void> {
    for (const d of dead) {
      await this.deadLetters.park(d);
      this.deps.metrics.processorDeadLettered.inc({ reason: d.reason.startsWith('meter') ? 'meter_value' : d.reason.startsWith('store') ? 'store_rejected' : 'invalid_event' });
    }
  }

  private deadLetter(reason: string, streamSeq: number, index: number, receivedAtMs: number, eventText: string): DeadLetterEntry {
    return { reason, stream: this.deps.nats.topology.stream, streamSeq, index, receivedAtMs, deadLetteredAt: new Date().toISOString(), event: eventText };
  }

  /** Waits while `meterline repair` holds the maintenance lease, keeping the messages from redelivery. */
  private async waitForMaintenance(msgs: JsMsg[]): Promise<void> {
    for (let logged = false; !this.stopping; ) {
      const holder = await this.deps.leases.holderOf(MAINTENANCE_LEASE).catch(() => undefined);
      if (!holder) return;
      if (!logged) this.log.info({ holder }, 'a repair is running: writes wait until it ends');
      logged = true;
      for (const m of msgs) m.working();
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  private async insert(rows: RawRow[], token: string): Promise<void> {
    const end = this.deps.metrics.processorInsertSeconds.startTimer();
    // Same rows, same token: a retried insert of a batch that did land is a no-op, table by table.
    await insertRawRows(this.deps.store, rows, token, new TimeSlice());
    end();
    this.deps.metrics.processorInsertRows.inc(rows.length);
  }

  /**
   * Inserts `rows` with `token`. When the store refuses the data itself (a value it cannot hold),
   * the rows are halved, each half with a token derived from the parent's (so a repeat splits and
   * deduplicates the same way), down to single rows: the refused events are returned by position,
   * for the dead-letter stream, and every other event is stored. One bad event never blocks a
   * partition. Other failures (the store away) are thrown.
   */
  private async insertSplitting(rows: RawRow[], token: string, offset = 0): Promise<Refused[]> {
    try {
      await this.insert(rows, token);
      return [];
    } catch (err) {
      if (!rejectsTheData(err)) throw err;
      if (rows.length === 1) return [{ at: offset, err }];
      if (offset === 0 && token.indexOf('/') < 0) this.log.warn({ err: errorMessage(err), rows: rows.length }, 'the store refused a batch; finding the events it refuses by halves');
      const mid = Math.ceil(rows.length / 2);
      return [...(await this.insertSplitting(rows.slice(0, mid), `${token}/0`, offset)), ...(await this.insertSplitting(rows.slice(mid), `${token}/1`, offset + mid))];
    }
  }

  /**
   * Lands an insert: the same rows and token again, with backoff, until the store takes them.
   * An insert that failed without a refusal (the store away, read-only, a timeout, ClickHouse dying
   * in the middle) may have landed in some tables and not others; repeating it exactly is the one
   * repair (every table skips the blocks it has). Throws only when the processor stops, gives a
   * partition up (`active` false) or no longer holds one of `units`; the write ledger then keeps the
   * insert for the next owner. While it
   * keeps failing, the partitions are reported stuck.
   */
  private async land(rows: RawRow[], token: string, units: Unit[], msgs: JsMsg[] = [], active: () => boolean = () => true): Promise<Refused[]> {
    for (let attempt = 0; ; attempt++) {
      try {
        if (attempt > 0 || msgs.length === 0) await this.waitForMaintenance(msgs); // a replay, or a retry after a wait
        const refused = await this.insertSplitting(rows, token);
        for (const u of units) this.failingSince.delete(u);
        this.reportStuck();
        return refused;
      } catch (err) {
        const since = Date.now();
        for (const u of units) if (!this.failingSince.has(u)) this.failingSince.set(u, { sinceMs: since, reason: errorMessage(err) });
        this.reportStuck();
        if (this.stopping || !active() || units.some((u) => !this.ownership?.holds(u))) {
          for (const u of units) this.failingSince.delete(u);
          this.reportStuck();
          throw err;
        }
        if (attempt % 10 === 0) this.log.error({ err: errorMessage(err), rows: rows.length, attempt }, 'insert failed; retrying the same insert until the store is back');
        for (const m of msgs) m.working();
        await new Promise((r) => setTimeout(r, Math.min(5_000, 250 * 2 ** Math.min(attempt, 5))));
        for (const m of msgs) m.working();
      }
    }
  }

  private reportStuck(): void {
    this.deps.metrics.processorStuckPartitions.set(this.stuckPartitions().length);
  }

  /** Partitions whose writes have been failing for a minute or more (the store away): `/readyz` reports them. */
  stuckPartitions(now = Date.now()): { partition: number; sinceMs: number; reason: string }[] {
    const out: { partition: number; sinceMs: number; reason: string }[] = [];
    for (const [u, f] of this.failingSince) if (u !== ROUTER && now - f.sinceMs >= STUCK_AFTER_MS) out.push({ partition: u, ...f });
    return out;
  }

  /**
   * Repeats every recorded insert that holds messages of `partition` (a previous owner's, or this
   * process's before a crash) before anything of the partition is consumed: each table gets the
   * blocks it lacks, so a write cut off half-way is completed and its redelivered events are then
   * duplicates in every table alike.
   */
  private async replayLedger(partition: number): Promise<string[]> {
    const keys: string[] = [];
    for (const pending of await this.ledger!.pendingFor(partition)) {
      const rebuilt = await this.rebuild(pending.entry);
      if ('gone' in rebuilt) {
        this.log.error({ token: pending.entry.token, reason: rebuilt.gone }, 'a recorded insert cannot be rebuilt; run `meterline reconcile` and `meterline repair` over its days');
        await this.ledger!.done(pending);
        continue;
      }
      const refused = await this.land(rebuilt.rows, pending.entry.token, [partition]);
      await this.parkAll(refused.map((r) => {
        const c = rebuilt.candidates[r.at]!;
        return this.deadLetter(`store rejected the event: ${errorMessage(r.err)}`, c.seq, c.index, c.receivedAtMs, losslessStringify(c.raw) ?? 'null');
      }));
      const refusedAt = new Set(refused.map((r) => r.at));
      await this.completeRepeat(pending.entry, rebuilt, refusedAt);
      rebuilt.candidates.forEach((c, i) => {
        if (!refusedAt.has(i) && partitionOf(c.event.source, c.event.id, this.partitions) === partition) keys.push(c.key);
      });
      await this.ledger!.done(pending);
      this.deps.metrics.processorLedgerReplays.inc();
      this.log.info({ partition, batch: pending.entry.token, rows: rebuilt.rows.length }, 'repeated an insert cut off by a crash or a lost lease');
    }
    return keys;
  }

  /**
   * Checks a repeated insert where it can be checked event by event, and completes it there:
   * `event_keys` (a key missing there would let the redelivered event be counted again) and
   * `meter_values` (whose views feed the rollups). ClickHouse records a block as inserted just
   * before it commits the block's part, so a process killed in that instant leaves a table whose
   * repeat is skipped although it lacks the rows; what is missing is inserted directly.
   */
  private async completeRepeat(entry: LedgerEntry, rebuilt: { rows: RawRow[]; candidates: Candidate[] }, refusedAt: ReadonlySet<number>): Promise<void> {
    const { ch, db } = this.deps.store;
    const at = entry.ingestedAtMs;
    const cands = rebuilt.candidates.filter((_c, i) => !refusedAt.has(i));
    const rows = rebuilt.rows.filter((_r, i) => !refusedAt.has(i));
    if (rows.length === 0) return;
    const keys = await this.storedKeys(cands, at);
    const missingKeys = rows.filter((_r, i) => !keys.has(cands[i]!.key)).map((r) => ({ source: r.source, id: r.id, ingested_at: at }));
    const values = await this.storedKeys(cands, at, 'meter_values');
    const missingValues = rows.flatMap((r, i) =>
      r.meter_values
        .filter((v) => !values.has(`${v.meter_id}\0${cands[i]!.key}`))
        .map((v) => ({ meter_id: v.meter_id, subject: r.subject, time: r.time, ingested_at: at, source: r.source, id: r.id, value: v.value, value_key: v.value_key, group_by: v.group_by })),
    );
    const settings = { deduplicate_blocks_in_dependent_materialized_views: 1 } as const;
    if (missingKeys.length > 0) await ch.insert({ table: `${db}.event_keys`, values: missingKeys, format: 'JSONEachRow', clickhouse_settings: { ...settings, insert_deduplication_token: `${entry.token}:event_keys` } });
    if (missingValues.length > 0) await ch.insert({ table: `${db}.meter_values`, values: missingValues, format: 'JSONEachRow', clickhouse_settings: { ...settings, insert_deduplication_token: `${entry.token}:meter_values` } });
    if (missingKeys.length + missingValues.length > 0) {
      this.log.warn({ batch: entry.token, missingKeys: missingKeys.length, missingValues: missingValues.length }, 'a repeated insert was skipped by a table that lacked its rows; inserted them directly (run `meterline reconcile` for its days)');
    }
  }

  /** The rows of a recorded insert, rebuilt from the stream's messages exactly as they were written. */
  private async rebuild(entry: LedgerEntry): Promise<{ rows: RawRow[]; candidates: Candidate[] } | { gone: string }> {
    const { nats } = this.deps;
    const messages = new Map<number, { receivedAtMs: number; items: unknown[]; lossless: boolean[] }>();
    for (const [seq] of entry.messages) {
      const sm = await nats.jsm.streams.getMessage(nats.topology.stream, { seq }).catch(() => null);
      if (!sm) return { gone: `message ${seq} is no longer in the stream` };
      let parsed: ExactJson;
      try {
        parsed = parseExact(UTF8_STRICT.decode(sm.data));
      } catch (err) {
        return { gone: `message ${seq} no longer parses: ${errorMessage(err)}` };
      }
      const receivedAtMs = receivedAt(sm.header?.get(RECEIVED_AT_HEADER) || undefined, storedTimestampNanos(sm.timestamp));
      messages.set(seq, { receivedAtMs, items: parsed.items, lossless: parsed.lossless });
    }
    const rows: RawRow[] = [];
    const candidates: Candidate[] = [];
    for (const { seq, index } of ledgerRows(entry)) {
      const m = messages.get(seq)!;
      const r = checkEvent(m.items[index], m.receivedAtMs, NO_LIMITS);
      if (!r.ok) return { gone: `event ${index} of message ${seq} no longer checks` };
      const mv = meterValues(r.event, entry.meters);
      if (!mv.ok) return { gone: `event ${index} of message ${seq}: ${mv.reason}` };
      const c: Candidate = { partition: -1, event: r.event, key: eventKey(r.event), seq, index, receivedAtMs: m.receivedAtMs, raw: m.items[index], lossless: m.lossless[index]! };
      candidates.push(c);
      rows.push(rawRow(c, mv.values, entry.ingestedAtMs));
    }
    return { rows, candidates };
  }

  /** The store is unavailable: the messages come back after a delay growing with their deliveries. */
  private retryLater(msgs: JsMsg[]): void {
    for (const x of msgs) x.nak(Math.min(30_000, 1_000 * 2 ** Math.min(x.info.deliveryCount, 5)));
  }

  /**
   * Which of these keys `event_keys` holds. Query parameters travel in the URL (ClickHouse's
   * `http_max_uri_size` is 1 MiB), so the ids go in parts of about 256 KB.
   */
  private async storedKeys(cands: Candidate[], sinceMs: number, table: 'event_keys' | 'meter_values' = 'event_keys'): Promise<Set<string>> {
    const { ch, db } = this.deps.store;
    const meter = table === 'meter_values';
    const found = new Set<string>();
    for (let i = 0; i < cands.length; ) {
      const part: Candidate[] = [];
      let bytes = 0;
      while (i < cands.length && (part.length === 0 || bytes < 256 * 1024)) {
        const c = cands[i++]!;
        part.push(c);
        bytes += 3 * (c.event.id.length + c.event.source.length) + 8;
      }
      const rs = await ch.query({
        query: `SELECT source, id${meter ? ', meter_id' : ''} FROM ${db}.${table}
                WHERE ingested_at >= fromUnixTimestamp64Milli({since:Int64}) AND source IN {sources:Array(String)} AND id IN {ids:Array(String)}`,
        query_params: { since: sinceMs, sources: [...new Set(part.map((c) => c.event.source))], ids: part.map((c) => c.event.id) },
        format: 'JSONCompactEachRow',
      });
      for (const [source, id, meterId] of await rs.json<[string, string, string?]>()) found.add(meter ? `${meterId}\0${eventKey({ source, id })}` : eventKey({ source, id }));
    }
    return found;
  }
}
