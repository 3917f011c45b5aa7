import { errorMessage } from '../common/errors.ts';
import { MAINTENANCE_LEASE } from '../common/lease.ts';
import type { Logger } from '../common/logger.ts';
import type { Meter } from '../meter/index.ts';
import { BackfillSchedule } from './backfill-schedule.ts';
import { Consumer, retryLater, type Queued } from './consumer.ts';
import type { DeadLetterEntry } from './dead-letter.ts';
import { DedupStore } from './dedup-store.ts';
import { ROUTER, unitName, type Unit } from './ownership.ts';
import type { PartitionOwnership, ProcessorDeps, ProcessorParts } from './parts.ts';
import { batchToken, deadLetterFn, decodeMessages, freshCandidates, meterRows, refusedLetter, keysByPartition, type Candidate, type DeadLetterFn } from './pipeline.ts';
import type { RawRow } from './raw-rows.ts';
import { LedgerReplay } from './replay.ts';
import { Router } from './router.ts';
import { natsParts } from './wiring.ts';
import { ledgerEntry } from './write-ledger.ts';
import { Writer, type Ledger } from './writer.ts';

export type { PartitionOwnership, ProcessorDeps, ProcessorOptions, ProcessorParts } from './parts.ts';

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

const timer = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

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
 * Steps 1 to 3 are in pipeline.ts and dedup-store.ts, 4 to 7 in writer.ts, the ordering here;
 * the repeat of ledger entries on taking a partition is replay.ts.
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
  private readonly parts: ProcessorParts;
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly letter: DeadLetterFn;
  private readonly dedup: DedupStore;
  private readonly writer: Writer;
  private readonly replay: LedgerReplay;
  private readonly consumer: Consumer;
  private readonly backfills: BackfillSchedule;
  private ownership: PartitionOwnership | undefined;
  private ledger: Ledger | undefined;
  private loop: Promise<void> | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private stopping = false;
  /** Counts meter changes: a batch whose values were computed before one is computed again. */
  private metersVersion = 0;
  private failure: unknown;
  private unsubscribe: (() => void) | undefined;

  /** With the clients (as `meterline` runs it), or with its parts (as unit tests do). */
  constructor(deps: ProcessorDeps | ProcessorParts) {
    const parts = (this.parts = 'nats' in deps ? natsParts(deps) : deps);
    const { options, metrics } = parts;
    const now = (this.now = parts.now ?? Date.now);
    const sleep = parts.sleep ?? timer;
    const log = (this.log = parts.logger.child({ component: 'processor' }));
    const stopping = () => this.stopping;
    this.letter = deadLetterFn(parts.stream, now);
    this.dedup = new DedupStore(
      parts.lookups,
      { windowMs: options.dedupWindowMs, maxMemoryKeys: options.dedupMaxMemoryKeys, filterBytes: options.dedupFilterBytes ?? 0, partitions: parts.partitions },
      log,
      metrics,
      now,
      stopping,
    );
    const ledger = () => this.ledger!;
    this.writer = new Writer({ rows: parts.rows, ledger, maintenanceHolder: () => parts.leases.holderOf(MAINTENANCE_LEASE), holds: (u) => this.ownership?.holds(u) ?? false, stopping, log, metrics, now, sleep });
    this.replay = new LedgerReplay({ ledger, writer: this.writer, reader: parts.reader, lookups: parts.lookups, rows: parts.rows, park: (dead) => this.parkAll(dead), letter: this.letter, partitions: parts.partitions, log, metrics });
    const router = new Router(parts.publisher, parts.stream, parts.partitions, log);
    this.consumer = new Consumer({ source: parts.source, route: (m) => router.route(m), options: { partitions: parts.partitions, ...options }, log, metrics, now, sleep });
    this.backfills = new BackfillSchedule(parts.leases, log, options.backfillSettleMs ?? 60_000, (task) => this.serial(task), stopping);
  }

  async start(): Promise<void> {
    const { parts } = this;
    this.backfills.use(await parts.openBackfiller(() => this.writer.waitForMaintenance([]), this.log));
    // A meter created while we run is backfilled between batches, on the same serial chain as
    // the batches, so no event is both in flight here without it and missed by the backfill;
    // a second pass after a settle time catches batches that were in flight in other processors.
    this.unsubscribe = parts.meters.onChange((_key, next, prev) => {
      this.metersVersion++;
      if (next && next.id !== prev?.id) this.backfills.backfill(next, true);
    });
    await this.serial(() => this.backfills.backfillPending(parts.meters.list()));
    this.loop = this.run().catch((err: unknown) => this.fail(err));
    this.ownership = await parts.openOwnership({ acquired: (u) => this.acquired(u), released: (u, reason) => this.released(u, reason) }, this.log);
    this.ledger = await parts.openLedger(this.ownership.holder);
    await this.ownership.start();
    this.consumer.start();
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

  /** Partitions whose writes have been failing for a minute or more (the store away): `/readyz` reports them. */
  stuckPartitions(now = this.now()): { partition: number; sinceMs: number; reason: string }[] {
    return this.writer.stuckPartitions(now);
  }

  /** Stops taking messages, finishes the batch in flight, hands the partitions back, then returns. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.unsubscribe?.();
    this.backfills.stop();
    this.consumer.stopWatchdog();
    await this.ownership?.stop();
    this.consumer.wake();
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
      const replayed = await this.replay.replay(unit);
      await this.dedup.load(unit);
      // Their rows keep the `ingested_at` of the first attempt, which may be older than the dedup
      // window (a restart days later): the redelivered copies are duplicates all the same.
      this.dedup.index(unit).add(replayed, this.now());
      // The previous owner's last insert may land after the load (it was in flight when it died):
      // until its messages have been redelivered, fresh keys are checked in the store too.
      this.dedup.verifyUntilMs(unit, this.now() + (this.parts.options.handoverVerifyMs ?? 90_000));
    }
    await this.consumer.open(unit);
  }

  private async released(unit: Unit, reason: 'lost' | 'handover' | 'stop'): Promise<void> {
    if (!(await this.consumer.close(unit))) return;
    // Handing over: the batch in flight finishes (and is acked) before the lease is given back.
    if (reason !== 'lost') await this.chain;
    this.dedup.drop(unit);
  }

  // ---- batches -----------------------------------------------------------------------------

  /**
   * The batch loop: takes what the partitions delivered, up to the batch limits, and handles it.
   * While one batch is being written (its insert runs on ClickHouse's threads), the next one is
   * decoded, deduplicated and given its meter values on this thread, when enough is queued to
   * fill it. Writes are in order, one at a time, on the serial chain.
   */
  private async run(): Promise<void> {
    const { consumer } = this;
    let writing: Promise<void> = Promise.resolve();
    let writingKeys: ReadonlySet<string> = EMPTY;
    while (!this.stopping) {
      if (consumer.queued === 0) {
        await consumer.waitForMessages();
        continue;
      }
      // Not backlogged: let the batch in flight finish first, so the next one gathers more.
      if (!consumer.backlogged()) await writing;
      const batch = consumer.takeBatch();
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
          retryLater(live.map((q) => q.m));
          return false;
        })
        .then((stored) => {
          // Not stored: its messages come back, and their events must not be taken for duplicates.
          if (!stored && writingKeys === keys) writingKeys = EMPTY;
        });
    }
    await writing;
  }

  /** Step 1: decode and validate every event of the batch. */
  private async decode(batch: Queued[]): Promise<Decoded> {
    const { candidates, dead } = await decodeMessages(
      batch.map((q) => ({ partition: q.feed.unit, m: q.m })),
      this.parts.options.limits,
      this.letter,
    );
    return { batch, candidates, dead };
  }

  /**
   * Steps 2 and 3: dedup and meter values; `undefined` if the batch went back (the store's
   * dedup look-up failed). `writing` holds the keys of the batch being written meanwhile: they
   * count as stored (if that write fails, its messages come back, carrying those events).
   */
  private async prepare(decoded: Decoded, writing: ReadonlySet<string>): Promise<Prepared | undefined> {
    const { metrics, options } = this.parts;
    const { batch, candidates } = decoded;
    const metersVersion = this.metersVersion;

    // 2. exact dedup, per partition
    const now = this.now();
    let fresh = await freshCandidates(candidates, writing, (c) => this.dedup.index(c.partition).has(c.key, now));
    const toCheck = fresh.filter((c) => this.dedup.needsStoreCheck(c.partition, c.key, now));
    if (toCheck.length > 0) {
      let stored: Set<string>;
      try {
        stored = await this.dedup.lookups.storedKeys(toCheck.map((c) => c.event), now - options.dedupWindowMs);
      } catch (err) {
        this.log.error({ err: errorMessage(err), messages: batch.length }, 'dedup look-up in the store failed; messages will be redelivered');
        retryLater(batch.map((q) => q.m));
        return undefined;
      }
      metrics.processorStoreLookups.inc(toCheck.length);
      fresh = fresh.filter((c) => !stored.has(c.key));
    }

    // 3. meter values
    const meters = this.parts.meters.list();
    const valued = await meterRows(fresh, meters, now, this.letter);
    const dead = [...decoded.dead, ...valued.dead];
    return { decoded, rows: valued.rows, accepted: valued.accepted, dead, duplicates: candidates.length - fresh.length, now, metersVersion, meters };
  }

  /**
   * Steps 4 to 8: the fence, the ledger, one insert, then remember keys and park dead letters,
   * then ack. On the serial chain. True when the batch's accepted events were stored (their keys
   * are in the index) or parked; false when its messages go back.
   */
  private async write(prepared: Prepared): Promise<boolean> {
    const { metrics, options } = this.parts;
    // A meter changed since the batch was prepared: its values are computed again (and its
    // backfill, on this chain, has run before or runs after this insert).
    const p = prepared.metersVersion === this.metersVersion ? prepared : await this.prepare(prepared.decoded, EMPTY);
    if (!p) return false;
    const { batch } = p.decoded;
    const { rows, dead, now } = p;
    const msgs = batch.map((q) => q.m);
    const units = [...new Set(batch.map((q) => q.feed.unit))];
    // 4. `meterline repair` holds the maintenance lease while it rewrites rows: nothing is written meanwhile.
    await this.writer.waitForMaintenance(msgs);
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
      // 5 to 7: the ledger entry, the insert landed, the entry cleared.
      const token = batchToken(this.parts.stream, msgs.map((m) => m.seq), rows.length);
      const types = new Set(rows.map((r) => r.type));
      const entry = ledgerEntry(token, units, now, p.meters.filter((m) => types.has(m.eventType)), accepted);
      const written = await this.writer.write(entry, rows, units, msgs, () => batch.every((q) => q.feed.active));
      if (!written.landed) {
        // Given up unlanded (the partition lost, or stopping): the entry stays for the next owner,
        // and until redeliveries are through fresh keys are checked against the store as well.
        for (const u of units) this.dedup.extendVerify(u, now + 5 * 60_000);
        this.log.error({ err: errorMessage(written.err), messages: batch.length }, 'insert not landed; messages will be redelivered');
        retryLater(msgs);
        return false;
      }
      if (written.refused.length > 0) {
        const out = new Set(written.refused.map((r) => r.at));
        for (const r of written.refused) dead.push(refusedLetter(this.letter, accepted[r.at]!, r.err));
        accepted = accepted.filter((_c, i) => !out.has(i));
      }
    }
    // 7. the keys in memory, the dead letters parked
    const { byPartition, late } = keysByPartition(accepted, now, options.lateAfterMs);
    metrics.processorLateEvents.inc(late);
    await this.dedup.add(byPartition, now);
    await this.parkAll(dead);
    metrics.processorDuplicates.inc(p.duplicates);
    metrics.processorEvents.inc({ outcome: 'stored' }, accepted.length);
    metrics.processorEvents.inc({ outcome: 'duplicate' }, p.duplicates);
    metrics.processorEvents.inc({ outcome: 'dead_lettered' }, dead.length);
    // 8. ack
    for (const m of msgs) m.ack();
    return true;
  }

  private async parkAll(dead: DeadLetterEntry[]): Promise<void> {
    for (const d of dead) {
      await this.parts.deadLetters.park(d);
      this.parts.metrics.processorDeadLettered.inc({ reason: d.reason.startsWith('meter') ? 'meter_value' : d.reason.startsWith('store') ? 'store_rejected' : 'invalid_event' });
    }
  }
}
