import type { Logger } from '../common/logger.ts';
import type { Metrics } from '../common/metrics.ts';
import { partitionOf } from '../common/partition.ts';
import type { DeadLetterEntry } from './dead-letter.ts';
import type { KeyLookups } from './dedup-store.ts';
import { rebuildRows, refusedLetter, type Candidate, type DeadLetterFn, type StoredMessage } from './pipeline.ts';
import type { RawRow } from './raw-rows.ts';
import type { LedgerEntry } from './write-ledger.ts';
import type { EventKeyRow, Ledger, MeterValueRow, RowSink, Writer } from './writer.ts';

/** Reads a message of the event stream back by its sequence; null when it is no longer there. */
export interface StreamReader {
  read(seq: number): Promise<StoredMessage | null>;
}

export interface ReplayDeps {
  ledger: () => Ledger;
  writer: Writer;
  reader: StreamReader;
  lookups: KeyLookups;
  rows: RowSink;
  park: (dead: DeadLetterEntry[]) => Promise<void>;
  letter: DeadLetterFn;
  partitions: number;
  log: Logger;
  metrics: Metrics;
}

/** Repeats the recorded inserts of a partition just taken, before it is consumed (see processor.ts). */
export class LedgerReplay {
  constructor(private readonly deps: ReplayDeps) {}

  /**
   * Repeats every recorded insert that holds messages of `partition` (a previous owner's, or this
   * process's before a crash) before anything of the partition is consumed: each table gets the
   * blocks it lacks, so a write cut off half-way is completed and its redelivered events are then
   * duplicates in every table alike. Returns the partition's keys the repeats stored.
   */
  async replay(partition: number): Promise<string[]> {
    const { deps } = this;
    const ledger = deps.ledger();
    const keys: string[] = [];
    for (const pending of await ledger.pendingFor(partition)) {
      const rebuilt = await this.rebuild(pending.entry);
      if ('gone' in rebuilt) {
        deps.log.error({ token: pending.entry.token, reason: rebuilt.gone }, 'a recorded insert cannot be rebuilt; run `meterline reconcile` and `meterline repair` over its days');
        await ledger.done(pending);
        continue;
      }
      const refused = await deps.writer.land(rebuilt.rows, pending.entry.token, [partition]);
      await deps.park(refused.map((r) => refusedLetter(deps.letter, rebuilt.candidates[r.at]!, r.err)));
      const refusedAt = new Set(refused.map((r) => r.at));
      await this.completeRepeat(pending.entry, rebuilt, refusedAt);
      rebuilt.candidates.forEach((c, i) => {
        if (!refusedAt.has(i) && partitionOf(c.event.source, c.event.id, deps.partitions) === partition) keys.push(c.key);
      });
      await ledger.done(pending);
      deps.metrics.processorLedgerReplays.inc();
      deps.log.info({ partition, batch: pending.entry.token, rows: rebuilt.rows.length }, 'repeated an insert cut off by a crash or a lost lease');
    }
    return keys;
  }

  /** The rows of a recorded insert, rebuilt from the stream's messages exactly as they were written. */
  private async rebuild(entry: LedgerEntry): Promise<ReturnType<typeof rebuildRows>> {
    const stored = new Map<number, StoredMessage | null>();
    for (const [seq] of entry.messages) {
      const sm = await this.deps.reader.read(seq);
      stored.set(seq, sm);
      if (!sm) break; // gone: rebuildRows says so
    }
    return rebuildRows(entry, stored);
  }

  /**
   * Checks a repeated insert where it can be checked event by event, and completes it there:
   * `event_keys` (a key missing there would let the redelivered event be counted again) and
   * `meter_values` (whose views feed the rollups). ClickHouse records a block as inserted just
   * before it commits the block's part, so a process killed in that instant leaves a table whose
   * repeat is skipped although it lacks the rows; what is missing is inserted directly.
   */
  private async completeRepeat(entry: LedgerEntry, rebuilt: { rows: RawRow[]; candidates: Candidate[] }, refusedAt: ReadonlySet<number>): Promise<void> {
    const { lookups, rows: sink } = this.deps;
    const at = entry.ingestedAtMs;
    const cands = rebuilt.candidates.filter((_c, i) => !refusedAt.has(i));
    const rows = rebuilt.rows.filter((_r, i) => !refusedAt.has(i));
    if (rows.length === 0) return;
    const events = cands.map((c) => c.event);
    const keys = await lookups.storedKeys(events, at);
    const missingKeys: EventKeyRow[] = rows.filter((_r, i) => !keys.has(cands[i]!.key)).map((r) => ({ source: r.source, id: r.id, ingested_at: at }));
    const values = await lookups.storedKeys(events, at, 'meter_values');
    const missingValues: MeterValueRow[] = rows.flatMap((r, i) =>
      r.meter_values
        .filter((v) => !values.has(`${v.meter_id}\0${cands[i]!.key}`))
        .map((v) => ({ meter_id: v.meter_id, subject: r.subject, time: r.time, ingested_at: at, source: r.source, id: r.id, value: v.value, value_key: v.value_key, group_by: v.group_by })),
    );
    if (missingKeys.length > 0) await sink.insertKeys(missingKeys, `${entry.token}:event_keys`);
    if (missingValues.length > 0) await sink.insertValues(missingValues, `${entry.token}:meter_values`);
    if (missingKeys.length + missingValues.length > 0) {
      this.deps.log.warn({ batch: entry.token, missingKeys: missingKeys.length, missingValues: missingValues.length }, 'a repeated insert was skipped by a table that lacked its rows; inserted them directly (run `meterline reconcile` for its days)');
    }
  }
}
