import { ClickHouseError } from '@clickhouse/client';
import type { Store } from '../common/clickhouse.ts';
import { errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import type { Metrics } from '../common/metrics.ts';
import { TimeSlice } from '../common/time-slice.ts';
import { ROUTER, type Unit } from './ownership.ts';
import { insertRawRows, type RawRow } from './raw-rows.ts';
import type { LedgerEntry, LedgerSlot, PendingWrite } from './write-ledger.ts';

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

/** A row of `event_keys`, inserted directly to complete a repeat. */
export interface EventKeyRow {
  source: string;
  id: string;
  ingested_at: number;
}

/** A row of `meter_values`, inserted directly to complete a repeat. */
export interface MeterValueRow {
  meter_id: string;
  subject: string;
  time: number;
  ingested_at: number;
  source: string;
  id: string;
  value: string;
  value_key: string;
  group_by: Record<string, string>;
}

/** Where the processor's rows go. Each insert carries a deduplication token: the same rows with the same token again are a no-op. */
export interface RowSink {
  /** One insert into `events_raw` (its views fan it out to `event_keys`, `meter_values` and the rollups). */
  insertRaw(rows: RawRow[], token: string): Promise<void>;
  insertKeys(rows: EventKeyRow[], token: string): Promise<void>;
  insertValues(rows: MeterValueRow[], token: string): Promise<void>;
}

/** `RowSink` in ClickHouse. */
export class ClickHouseRowSink implements RowSink {
  constructor(private readonly store: Store) {}

  insertRaw(rows: RawRow[], token: string): Promise<void> {
    return insertRawRows(this.store, rows, token, new TimeSlice());
  }

  insertKeys(rows: EventKeyRow[], token: string): Promise<void> {
    return this.insertDirect('event_keys', rows, token);
  }

  insertValues(rows: MeterValueRow[], token: string): Promise<void> {
    return this.insertDirect('meter_values', rows, token);
  }

  private async insertDirect(table: string, values: object[], token: string): Promise<void> {
    const { ch, db } = this.store;
    await ch.insert({ table: `${db}.${table}`, values, format: 'JSONEachRow', clickhouse_settings: { deduplicate_blocks_in_dependent_materialized_views: 1, insert_deduplication_token: token } });
  }
}

/** The write ledger as the writer uses it (`WriteLedger` in NATS KV). */
export interface Ledger {
  record(entry: LedgerEntry): Promise<LedgerSlot>;
  clear(slot: LedgerSlot): Promise<void>;
  keep(slot: LedgerSlot): void;
  pendingFor(unit: number): Promise<PendingWrite[]>;
  done(p: PendingWrite): Promise<void>;
}

/** A message waiting on a write: kept from redelivery while it waits. */
export interface Waiting {
  working(): void;
}

/** An event the store refused, by its position in the insert's rows. */
export interface Refused {
  at: number;
  err: unknown;
}

export interface WriterDeps {
  rows: RowSink;
  /** Opened once the processor's name is known (see `Processor.start`). */
  ledger: () => Ledger;
  /** Who holds the maintenance lease (`meterline repair`), if anyone. */
  maintenanceHolder: () => Promise<string | undefined>;
  /** The lease fence: true while this processor may write for `unit`. */
  holds: (unit: Unit) => boolean;
  stopping: () => boolean;
  log: Logger;
  metrics: Metrics;
  now: () => number;
  sleep: (ms: number) => Promise<void>;
}

/**
 * Writes a batch's rows: records it in the write ledger, inserts it, repeating the identical
 * insert until it lands, isolates events the store refuses by halving, and clears the ledger
 * entry. Waits while a repair holds the maintenance lease, and reports partitions whose writes
 * keep failing.
 */
export class Writer {
  /** Partitions whose current write keeps failing, since when and why. */
  private readonly failingSince = new Map<Unit, { sinceMs: number; reason: string }>();

  constructor(private readonly deps: WriterDeps) {}

  /**
   * Steps 5 to 7 of a batch (see processor.ts): the ledger entry, the insert landed, the entry
   * cleared. `landed: false` when the insert was given up (the partition lost, or stopping): the
   * entry then stays for the next owner.
   */
  async write(entry: LedgerEntry, rows: RawRow[], units: Unit[], msgs: Waiting[], active: () => boolean): Promise<{ landed: true; refused: Refused[] } | { landed: false; err: unknown }> {
    const ledger = this.deps.ledger();
    // The ledger first: from here on, a crash anywhere leaves the next owner what it needs to
    // repeat this exact insert (see write-ledger.ts). If NATS cannot record it, nothing is written.
    const slot = await ledger.record(entry);
    let refused: Refused[];
    try {
      refused = await this.land(rows, entry.token, units, msgs, active);
    } catch (err) {
      ledger.keep(slot);
      return { landed: false, err };
    }
    await ledger.clear(slot);
    return { landed: true, refused };
  }

  /** Waits while `meterline repair` holds the maintenance lease, keeping the messages from redelivery. */
  async waitForMaintenance(msgs: Waiting[]): Promise<void> {
    for (let logged = false; !this.deps.stopping(); ) {
      const holder = await this.deps.maintenanceHolder().catch(() => undefined);
      if (!holder) return;
      if (!logged) this.deps.log.info({ holder }, 'a repair is running: writes wait until it ends');
      logged = true;
      for (const m of msgs) m.working();
      await this.deps.sleep(500);
    }
  }

  private async insert(rows: RawRow[], token: string): Promise<void> {
    const end = this.deps.metrics.processorInsertSeconds.startTimer();
    // Same rows, same token: a retried insert of a batch that did land is a no-op, table by table.
    await this.deps.rows.insertRaw(rows, token);
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
      if (offset === 0 && token.indexOf('/') < 0) this.deps.log.warn({ err: errorMessage(err), rows: rows.length }, 'the store refused a batch; finding the events it refuses by halves');
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
  async land(rows: RawRow[], token: string, units: Unit[], msgs: Waiting[] = [], active: () => boolean = () => true): Promise<Refused[]> {
    const { deps } = this;
    for (let attempt = 0; ; attempt++) {
      try {
        if (attempt > 0 || msgs.length === 0) await this.waitForMaintenance(msgs); // a replay, or a retry after a wait
        const refused = await this.insertSplitting(rows, token);
        for (const u of units) this.failingSince.delete(u);
        this.reportStuck();
        return refused;
      } catch (err) {
        const since = deps.now();
        for (const u of units) if (!this.failingSince.has(u)) this.failingSince.set(u, { sinceMs: since, reason: errorMessage(err) });
        this.reportStuck();
        if (deps.stopping() || !active() || units.some((u) => !deps.holds(u))) {
          for (const u of units) this.failingSince.delete(u);
          this.reportStuck();
          throw err;
        }
        if (attempt % 10 === 0) deps.log.error({ err: errorMessage(err), rows: rows.length, attempt }, 'insert failed; retrying the same insert until the store is back');
        for (const m of msgs) m.working();
        await deps.sleep(Math.min(5_000, 250 * 2 ** Math.min(attempt, 5)));
        for (const m of msgs) m.working();
      }
    }
  }

  private reportStuck(): void {
    this.deps.metrics.processorStuckPartitions.set(this.stuckPartitions().length);
  }

  /** Partitions whose writes have been failing for a minute or more (the store away): `/readyz` reports them. */
  stuckPartitions(now = this.deps.now()): { partition: number; sinceMs: number; reason: string }[] {
    const out: { partition: number; sinceMs: number; reason: string }[] = [];
    for (const [u, f] of this.failingSince) if (u !== ROUTER && now - f.sinceMs >= STUCK_AFTER_MS) out.push({ partition: u, ...f });
    return out;
  }
}
