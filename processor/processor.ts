import { headers as natsHeaders } from '@nats-io/transport-node';
import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import { ClickHouseError } from '@clickhouse/client';
import { stringify as losslessStringify } from 'lossless-json';
import type { CatalogReplica } from '../common/catalog.ts';
import type { Store } from '../common/clickhouse.ts';
import { errorMessage } from '../common/errors.ts';
import { parseExact, type ExactJson } from '../common/json-text.ts';
import { TimeSlice } from '../common/time-slice.ts';
import type { Leases } from '../common/lease.ts';
import type { Logger } from '../common/logger.ts';
import type { Metrics } from '../common/metrics.ts';
import { partitionConsumer, ROUTER_CONSUMER, type NatsClients } from '../common/nats.ts';
import { PARTITION_SQL } from '../common/partition.ts';
import { checkEvent, eventKey, parsedBatch, partitionMessages, RECEIVED_AT_HEADER, type TimeLimits, type UsageEvent } from '../ingest/index.ts';
import { Backfiller } from './backfill.ts';
import { DeadLetters, type DeadLetterEntry } from './dead-letter.ts';
import { DedupIndex, KEY_HASH_EXACT_SQL, STORED_KEY_PACKED_SQL } from './dedup.ts';
import { meterValues, type Meter } from './meters.ts';
import { Ownership, ROUTER, unitName, type Unit } from './ownership.ts';
import { insertRawRows, type RawRow } from './raw-rows.ts';

const UTF8 = new TextDecoder();

/**
 * True when ClickHouse refused the rows themselves (a value it cannot parse or store): retrying
 * cannot help, so such a message is eventually dead-lettered. Every other failure (the store
 * away, read-only, out of disk, too many parts, a timeout) is retried until the store is back.
 */
export function rejectsTheData(err: unknown): boolean {
  return err instanceof ClickHouseError && /^(CANNOT_PARSE|CANNOT_READ|CANNOT_CONVERT|INCORRECT_DATA|TYPE_MISMATCH|ILLEGAL_TYPE|ILLEGAL_COLUMN|VALUE_IS_OUT_OF_RANGE|DECIMAL_OVERFLOW|ARGUMENT_OUT_OF_BOUND|TOO_LARGE_|CANNOT_INSERT_NULL|INCORRECT_NUMBER_OF_COLUMNS|UNEXPECTED_END_OF_FILE|SIZES_OF_ARRAYS_DONT_MATCH|UNKNOWN_FORMAT_VERSION|BAD_ARGUMENTS)/.test(err.type ?? '');
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
}

const EMPTY: ReadonlySet<string> = new Set();

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
 * 4. check the leases are still held (a processor that lost one writes nothing for it), then
 *    one INSERT into `events_raw` (the materialized views fan it out to `event_keys`,
 *    `meter_values` and the rollups), with a deterministic deduplication token;
 * 5. record the keys in memory, park dead letters (awaiting JetStream's ack);
 * 6. ack the messages.
 *
 * Steps 1 to 3 of the next batch run while the previous one is in steps 4 to 6 (its insert runs
 * on ClickHouse's threads); the keys of the batch being written count as stored for it, and
 * writes happen one at a time, in order.
 *
 * A crash before 4 completes redelivers the batch and nothing was written. A crash between 4
 * and 6 redelivers a batch whose events are in `event_keys`: whoever owns the partition next
 * loads its keys from that table and checks fresh keys against it for a while after taking
 * over, so they are dropped as duplicates. Rows are never counted twice, and an event is never
 * acked before it is stored or parked.
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
  private readonly backfiller: Backfiller;
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

  constructor(private readonly deps: ProcessorDeps) {
    this.log = deps.logger.child({ component: 'processor' });
    this.deadLetters = new DeadLetters(deps.nats);
    this.backfiller = new Backfiller(deps.store, this.log);
  }

  private get partitions(): number {
    return this.deps.nats.topology.partitions;
  }

  async start(): Promise<void> {
    const { options } = this.deps;
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
      await this.loadDedupIndex(unit);
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
      const text = UTF8.decode(m.data);
      let parts: { partition: number; part: string; data: string }[];
      try {
        // Only `source` and `id` are read here (strings): JSON.parse suffices, and the events
        // move on as their texts, byte for byte.
        const limit = (nats.nc.info?.max_payload ?? 1024 * 1024) - 1024;
        parts = partitionMessages(text, parsedBatch(text, JSON.parse(text)), this.partitions, limit);
      } catch {
        parts = [{ partition: 0, part: '', data: text }]; // malformed: partition 0's owner dead-letters it with the reason
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

  /** One batch, start to end (no other batch in flight: used to retry messages one by one). */
  private async handle(batch: Queued[]): Promise<void> {
    const prepared = await this.prepare(await this.decode(batch), EMPTY);
    if (prepared) await this.write(prepared);
  }

  /** Step 1, pure CPU work: decode and validate every event of the batch. */
  private async decode(batch: Queued[]): Promise<Decoded> {
    const { options } = this.deps;
    const dead: DeadLetterEntry[] = [];
    const candidates: Candidate[] = [];
    const slice = new TimeSlice();
    for (const { feed, m } of batch) {
      if (slice.due()) await slice.pause();
      const partition = feed.unit;
      const header = m.headers?.get(RECEIVED_AT_HEADER);
      const receivedAtMs = header ? Number(header) : Math.floor(Number(m.info.timestampNanos) / 1e6);
      let parsed: ExactJson;
      const text = UTF8.decode(m.data);
      try {
        parsed = parseExact(text);
      } catch (err) {
        dead.push(this.deadLetter(`malformed JSON: ${errorMessage(err)}`, m.seq, -1, receivedAtMs, text));
        continue;
      }
      parsed.items.forEach((item, index) => {
        const r = checkEvent(item, receivedAtMs, options.limits);
        if (r.ok) candidates.push({ partition, event: r.event, key: eventKey(r.event), seq: m.seq, index, receivedAtMs, raw: item, lossless: parsed.lossless[index]! });
        else dead.push(this.deadLetter(r.errors.map((e) => (e.field ? `${e.field}: ${e.reason}` : e.reason)).join('; '), m.seq, index, receivedAtMs, losslessStringify(item) ?? 'null'));
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
      rows.push({
        source: c.event.source,
        id: c.event.id,
        type: c.event.type,
        subject: c.event.subject,
        time: c.event.timeMs,
        ingested_at: now,
        received_at: c.receivedAtMs,
        data: (c.lossless ? losslessStringify(c.event.data) : JSON.stringify(c.event.data)) ?? '{}',
        stream_seq: c.seq,
        meter_values: mv.values,
      });
    }
    return { decoded, rows, accepted, dead, duplicates: candidates.length - fresh.length, now, metersVersion };
  }

  /**
   * Steps 4 to 6: the fence, one insert, then remember keys and park dead letters, then ack. On
   * the serial chain. True when the batch's accepted events were stored (their keys are in the
   * index); false when its messages go back.
   */
  private async write(prepared: Prepared): Promise<boolean> {
    const { metrics, options } = this.deps;
    // A meter changed since the batch was prepared: its values are computed again (and its
    // backfill, on this chain, has run before or runs after this insert).
    const p = prepared.metersVersion === this.metersVersion ? prepared : await this.prepare(prepared.decoded, EMPTY);
    if (!p) return false;
    const { batch } = p.decoded;
    const { rows, accepted, dead, now } = p;
    const msgs = batch.map((q) => q.m);
    const lost = [...new Set(batch.map((q) => q.feed.unit))].filter((u) => !this.ownership?.holds(u));
    if (lost.length > 0) {
      // A partition's lease lapsed while the batch was prepared: another processor may own it
      // now. Write nothing; the messages go back to whoever owns their partitions.
      this.log.warn({ units: lost.map(unitName) }, 'lease not held at insert time; batch handed back');
      for (const m of msgs) m.nak();
      return false;
    }
    if (rows.length > 0) {
      const err = await this.insert(rows, msgs).then(
        () => undefined,
        (e: unknown) => this.retryInsert(rows, batch, e),
      );
      if (err !== undefined) {
        // Message by message, some may be stored: their keys are in the index then.
        await this.onInsertFailure(err, batch, now);
        return false;
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
    for (const d of dead) {
      await this.deadLetters.park(d);
      metrics.processorDeadLettered.inc({ reason: d.reason.startsWith('meter') ? 'meter_value' : d.reason.startsWith('store') ? 'store_rejected' : 'invalid_event' });
    }
    metrics.processorDuplicates.inc(p.duplicates);
    metrics.processorEvents.inc({ outcome: 'stored' }, rows.length);
    metrics.processorEvents.inc({ outcome: 'duplicate' }, p.duplicates);
    metrics.processorEvents.inc({ outcome: 'dead_lettered' }, dead.length);
    for (const m of msgs) m.ack();
    return true;
  }

  private deadLetter(reason: string, streamSeq: number, index: number, receivedAtMs: number, eventText: string): DeadLetterEntry {
    return { reason, stream: this.deps.nats.topology.stream, streamSeq, index, receivedAtMs, deadLetteredAt: new Date().toISOString(), event: eventText };
  }

  private async insert(rows: RawRow[], msgs: JsMsg[]): Promise<void> {
    const end = this.deps.metrics.processorInsertSeconds.startTimer();
    const seqs = msgs.map((m) => m.seq);
    // Same messages, same rows, same token: a retried insert of a batch that did land is a no-op.
    await insertRawRows(this.deps.store, rows, `${this.deps.nats.topology.stream}:${Math.min(...seqs)}-${Math.max(...seqs)}:${rows.length}`, new TimeSlice());
    end();
    this.deps.metrics.processorInsertRows.inc(rows.length);
  }

  /**
   * The store failed the insert without refusing the data (away, read-only, a timeout): the
   * insert may have landed in part, e.g. in `events_raw` and some of its views but not all, if
   * ClickHouse died in the middle. The one exact repair is the same insert again, with the same
   * rows and deduplication token: ClickHouse then skips the blocks it has and writes the ones
   * it lacks, in every view. So the batch is held (its messages kept from redelivery) and the
   * identical insert retried with backoff until it lands. Gives up only when the processor
   * stops or loses a partition, or the store refuses the data; returns that error, or
   * undefined once the insert landed.
   */
  private async retryInsert(rows: RawRow[], batch: Queued[], first: unknown): Promise<unknown> {
    let err = first;
    for (let attempt = 0; !rejectsTheData(err); attempt++) {
      if (this.stopping || batch.some((q) => !q.feed.active || !this.ownership?.holds(q.feed.unit))) return err;
      if (attempt % 10 === 0) this.log.error({ err: errorMessage(err), rows: rows.length, attempt }, 'insert failed; retrying the same insert until the store is back');
      for (const q of batch) q.m.working();
      await new Promise((r) => setTimeout(r, Math.min(5_000, 250 * 2 ** Math.min(attempt, 5))));
      for (const q of batch) q.m.working();
      try {
        await this.insert(rows, batch.map((q) => q.m));
        return undefined;
      } catch (e) {
        err = e;
      }
    }
    return err;
  }

  private async onInsertFailure(err: unknown, batch: Queued[], now: number): Promise<void> {
    // The insert may have landed even though we saw an error (a timeout): until redeliveries
    // are through, fresh keys of these partitions are checked against the store as well.
    for (const q of batch) this.verifyUntil.set(q.feed.unit, Math.max(this.verifyUntil.get(q.feed.unit) ?? 0, now + 5 * 60_000));
    const rejected = rejectsTheData(err);
    if (rejected && batch.length > 1) {
      // The store refused the data: find the message it refuses by inserting one at a time.
      this.log.warn({ err: errorMessage(err), messages: batch.length }, 'insert rejected; retrying message by message');
      for (const q of batch) await this.handle([q]);
      return;
    }
    const m = batch[0]?.m;
    if (rejected && m && m.info.deliveryCount >= this.deps.options.maxDeliveries) {
      const text = UTF8.decode(m.data);
      await this.deadLetters.park(this.deadLetter(`store rejected the batch: ${errorMessage(err)}`, m.seq, -1, Date.now(), text));
      this.deps.metrics.processorDeadLettered.inc({ reason: 'store_rejected' });
      m.ack();
      return;
    }
    this.log.error({ err: errorMessage(err), messages: batch.length }, 'insert failed; messages will be redelivered');
    this.retryLater(batch.map((q) => q.m));
  }

  /** The store is unavailable: the messages come back after a delay growing with their deliveries. */
  private retryLater(msgs: JsMsg[]): void {
    for (const x of msgs) x.nak(Math.min(30_000, 1_000 * 2 ** Math.min(x.info.deliveryCount, 5)));
  }

  /**
   * Which of these keys `event_keys` holds. Query parameters travel in the URL (ClickHouse's
   * `http_max_uri_size` is 1 MiB), so the ids go in parts of about 256 KB.
   */
  private async storedKeys(cands: Candidate[], sinceMs: number): Promise<Set<string>> {
    const { ch, db } = this.deps.store;
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
        query: `SELECT source, id FROM ${db}.event_keys
                WHERE ingested_at >= fromUnixTimestamp64Milli({since:Int64}) AND source IN {sources:Array(String)} AND id IN {ids:Array(String)}`,
        query_params: { since: sinceMs, sources: [...new Set(part.map((c) => c.event.source))], ids: part.map((c) => c.event.id) },
        format: 'JSONCompactEachRow',
      });
      for (const [source, id] of await rs.json<[string, string]>()) found.add(eventKey({ source, id }));
    }
    return found;
  }
}
