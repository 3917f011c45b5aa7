import { Decimal } from '../common/decimal.ts';
import type { Store } from '../common/clickhouse.ts';
import type { Meter } from '../meter/index.ts';
import { ROLLUP_TABLES, type ReconcileLine } from './contracts.ts';

export { ROLLUP_TABLES, type ReconcileLine, type RollupTable } from './contracts.ts';

/** event_keys keeps a key 31 days after `ingested_at` (sql/001); keys closer than an hour to expiry are not checked. */
export const KEYS_KEPT = 'now64(3) - INTERVAL 31 DAY + INTERVAL 1 HOUR';

/**
 * Proves exactly-once per event for each meter over [from, to) (whole UTC days), optionally for
 * one subject: no duplicate raw events or values, no event that names the meter without its
 * value, no value without its event, every recent key in `event_keys`, and every rollup's count
 * and sum equal to the per-event values (sums in Decimal(76, 9), so they cannot wrap).
 *
 * Cost: per meter, nine queries over the range: scans of `events_raw` (of the type) and
 * `meter_values` (of the meter), and three anti-joins whose right side is held in memory: the
 * meter's (source, id) keys in the range, the type's raw keys in the range, and their keys in
 * `event_keys` (read by primary key). Memory grows with the events in the range (~100 bytes a
 * key); reconcile a month at a time on large tenants.
 */
export async function reconcile(store: Store, meters: Meter[], opts: { fromMs: number; toMs: number; subject?: string }): Promise<ReconcileLine[]> {
  const { ch, db } = store;
  const params = { from: opts.fromMs, to: opts.toMs, subject: opts.subject ?? '' };
  const subj = opts.subject ? 'AND subject = {subject:String}' : '';
  const range = (col: string) => `${col} >= fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND ${col} < fromUnixTimestamp64Milli({to:Int64}, 'UTC') ${subj}`;
  const out: ReconcileLine[] = [];
  for (const m of meters) {
    const p = { ...params, meterId: m.id, type: m.eventType };
    const one = async (sql: string) => {
      const rs = await ch.query({ query: sql, query_params: p, format: 'JSONEachRow' });
      return (await rs.json<Record<string, string>>())[0] ?? {};
    };
    const n = async (sql: string) => (await one(sql)).n ?? '0';
    const values = await one(
      `SELECT toString(count()) AS count, toString(sum(toDecimal256(value, 9))) AS sum, toString(uniqExact(source, id)) AS keys, toString(count() - uniqExact(source, id)) AS dup
       FROM ${db}.meter_values WHERE meter_id = {meterId:String} AND ${range('time')}`,
    );
    const rollups = {} as ReconcileLine['rollups'];
    for (const t of ROLLUP_TABLES) {
      const r = await one(`SELECT toString(countMerge(value_count)) AS count, toString(sumMerge(value_sum)) AS sum FROM ${db}.${t} WHERE meter_id = {meterId:String} AND ${range('window_start')}`);
      rollups[t] = { count: r.count ?? '0', sum: new Decimal(r.sum ?? '0').toFixed() };
    }
    const raw = await one(
      `SELECT toString(count()) AS count, toString(uniqExact(source, id)) AS keys, toString(count() - uniqExact(source, id)) AS dup
       FROM ${db}.events_raw WHERE type = {type:String} AND ${range('time')}`,
    );
    const missingValues = await n(
      `SELECT toString(uniqExact(source, id)) AS n FROM ${db}.events_raw
       WHERE ${range('time')} AND has(meter_values.meter_id, {meterId:String})
         AND (source, id) NOT IN (SELECT source, id FROM ${db}.meter_values WHERE meter_id = {meterId:String} AND ${range('time')})`,
    );
    // A value's event is of the meter's type (counted live or backfilled) or names the meter.
    const orphanValues = await n(
      `SELECT toString(count()) AS n FROM ${db}.meter_values
       WHERE meter_id = {meterId:String} AND ${range('time')}
         AND (source, id) NOT IN (SELECT source, id FROM ${db}.events_raw WHERE (type = {type:String} OR has(meter_values.meter_id, {meterId:String})) AND ${range('time')})`,
    );
    const recentRaw = `SELECT source, id FROM ${db}.events_raw WHERE type = {type:String} AND ${range('time')} AND ingested_at > ${KEYS_KEPT}`;
    const missingKeys = await n(
      `SELECT toString(uniqExact(source, id)) AS n FROM ${db}.events_raw
       WHERE type = {type:String} AND ${range('time')} AND ingested_at > ${KEYS_KEPT}
         AND (source, id) NOT IN (SELECT source, id FROM ${db}.event_keys WHERE (source, id) IN (${recentRaw}))`,
    );
    const v = { count: values.count ?? '0', sum: new Decimal(values.sum ?? '0').toFixed() };
    const uncounted = Math.max(0, Number(raw.keys ?? 0) - Number(values.keys ?? 0));
    const line = { rawDuplicates: raw.dup ?? '0', valueDuplicates: values.dup ?? '0', missingValues, orphanValues, missingKeys };
    const ok =
      Object.values(line).every((x) => x === '0') &&
      Object.values(rollups).every((r) => r.count === v.count && r.sum === v.sum) &&
      Number(v.count) <= Number(raw.count ?? 0);
    out.push({ meter: m.slug, rawEvents: raw.count ?? '0', values: v, rollups, uncounted: String(uncounted), ...line, ok });
  }
  return out;
}
