import { isLosslessNumber, parse as losslessParse } from 'lossless-json';
import type { Store } from '../common/clickhouse.ts';
import type { Logger } from '../common/logger.ts';
import { meterValues, type Meter } from '../meter/index.ts';
import type { BackfillLedger } from './write-ledger.ts';

const PAGE = 5_000;

/**
 * Backfills a meter from the stored raw events, so a meter created after its events arrived
 * still counts all of them. It inserts into `meter_values` (whose views feed the rollups)
 * every event of the meter's type that has no value for this meter yet, using the same
 * `meterValues` function as the live path. Restartable: events already counted are skipped.
 * Events a new meter cannot count (no usable value) are reported, not dead-lettered: they
 * were accepted and are counted by every meter that can.
 */
export class Backfiller {
  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    /** Where each page is recorded before its insert (see write-ledger.ts); without it, a crash mid-insert can leave a rollup short. */
    private readonly ledger?: BackfillLedger,
    /** Awaited before each insert: the processor waits there while a repair holds the maintenance lease. */
    private readonly beforeInsert: () => Promise<void> = async () => undefined,
  ) {}

  /** Inserts a page's values, recorded first in the ledger when there is one; a page cut off by a crash is repeated first. */
  private async insertPage(meterId: string, token: string, rows: Record<string, unknown>[]): Promise<void> {
    const revision = await this.ledger?.record({ v: 1, meterId, token, rows });
    await this.insertValues(token, rows);
    if (revision !== undefined) await this.ledger!.clear(meterId, revision);
  }

  private async insertValues(token: string, values: Record<string, unknown>[]): Promise<void> {
    const { ch, db } = this.store;
    await this.beforeInsert();
    await ch.insert({
      table: `${db}.meter_values`,
      values,
      format: 'JSONEachRow',
      // The same rows with the same token: every table (meter_values and each rollup) skips what it has.
      clickhouse_settings: { insert_deduplication_token: token, deduplicate_blocks_in_dependent_materialized_views: 1 },
    });
  }

  /** Completes a page a crash cut off (same rows, same token), before a pass reads what is counted. */
  private async finishCutOffPage(meter: Meter): Promise<void> {
    const p = await this.ledger?.pending(meter.id);
    if (!p) return;
    await this.insertValues(p.entry.token, p.entry.rows);
    await this.ledger!.clear(meter.id, p.revision);
    this.log.info({ meter: meter.slug, rows: p.entry.rows.length }, 'repeated a backfill insert cut off by a crash');
  }

  /** The meters whose backfill has not completed yet. */
  async pending(meters: Meter[]): Promise<Meter[]> {
    if (meters.length === 0) return [];
    const { ch, db } = this.store;
    const rs = await ch.query({ query: `SELECT meter_id FROM ${db}.meter_backfills`, format: 'JSONCompactEachRow' });
    const done = new Set((await rs.json<[string]>()).map(([id]) => id));
    return meters.filter((m) => !done.has(m.id));
  }

  async runPending(meters: Meter[]): Promise<void> {
    for (const m of await this.pending(meters)) await this.run(m);
  }

  /**
   * One pass over the meter's events. `record: false` leaves the backfill pending (a second
   * pass follows); two passes never count an event twice, since each skips counted events. Two
   * processes must not run passes of one meter at once: the processor holds a lease.
   */
  async run(meter: Meter, opts: { record?: boolean } = {}): Promise<{ inserted: number; skipped: number }> {
    const { ch, db } = this.store;
    await this.finishCutOffPage(meter);
    let inserted = 0;
    let skipped = 0;
    let cursor: [number, string, string] = [-1, '', ''];
    for (;;) {
      const rs = await ch.query({
        query: `SELECT source, id, subject, toUnixTimestamp64Milli(time) AS t, toUnixTimestamp64Milli(ingested_at) AS ia, data
                FROM ${db}.events_raw
                WHERE type = {type:String}
                  AND (toUnixTimestamp64Milli(time), source, id) > ({t:Int64}, {s:String}, {i:String})
                  AND NOT has(meter_values.meter_id, {meter:String})
                  AND (source, id) NOT IN (SELECT source, id FROM ${db}.meter_values WHERE meter_id = {meter:String})
                ORDER BY time, source, id
                LIMIT {page:UInt32}`,
        query_params: { type: meter.eventType, meter: meter.id, t: cursor[0], s: cursor[1], i: cursor[2], page: PAGE },
        format: 'JSONEachRow',
      });
      const rows = await rs.json<{ source: string; id: string; subject: string; t: string; ia: string; data: string }>();
      if (rows.length === 0) break;
      const values = [];
      for (const r of rows) {
        const data = losslessParse(r.data) as Record<string, unknown>;
        const mv = meterValues({ type: meter.eventType, data: isLosslessNumber(data) ? {} : data }, [meter]);
        if (!mv.ok) {
          skipped++;
          continue;
        }
        for (const v of mv.values) {
          values.push({ meter_id: v.meter_id, subject: r.subject, time: Number(r.t), ingested_at: Number(r.ia), source: r.source, id: r.id, value: v.value, value_key: v.value_key, group_by: v.group_by });
        }
      }
      // A page's rows stay well under NATS's message limit (1 MiB) when recorded: inserted in parts of ≤ 256 KiB of JSON.
      for (let i = 0, part = 0; i < values.length; part++) {
        const chunk: Record<string, unknown>[] = [];
        for (let bytes = 0; i < values.length && (chunk.length === 0 || bytes < 256 * 1024); i++) {
          chunk.push(values[i]!);
          bytes += JSON.stringify(values[i]).length;
        }
        await this.insertPage(meter.id, `backfill:${meter.id}:${cursor.join(':')}:${part}`, chunk);
      }
      inserted += values.length;
      const last = rows[rows.length - 1]!;
      cursor = [Number(last.t), last.source, last.id];
    }
    if (opts.record !== false) await ch.insert({ table: `${db}.meter_backfills`, values: [{ meter_id: meter.id, inserted, skipped }], format: 'JSONEachRow' });
    if (inserted > 0 || skipped > 0) this.log.info({ meter: meter.slug, inserted, skipped }, 'backfilled meter from raw events');
    return { inserted, skipped };
  }
}
