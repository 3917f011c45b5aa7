import { Decimal } from 'decimal.js';
import type { Store } from '../common/clickhouse.ts';
import type { Meter } from '../processor/index.ts';
import { planUsageQuery, type Source, type UsageQuery, type WindowSize } from './usage-plan.ts';

export interface UsageRow {
  /** Exact decimal string. */
  value: string;
  windowStart: string;
  windowEnd: string;
  subject: string | null;
  groupBy: Record<string, string>;
}

export interface UsageResult {
  from?: string;
  to: string;
  windowSize?: WindowSize;
  data: UsageRow[];
  /** Which table answered: a rollup, or the per-event values. */
  source: Source;
}

/** AVG is rounded half-up to 9 decimal places (the scale of stored values). */
export const AVG_SCALE = 9;

const iso = (s: number | string) => new Date(Number(s) * 1000).toISOString().replace('.000Z', 'Z');

export async function queryUsage(store: Store, meter: Meter, q: Omit<UsageQuery, 'meterId' | 'aggregation'>, fromGiven: boolean): Promise<UsageResult> {
  const plan = planUsageQuery({ ...q, meterId: meter.id, aggregation: meter.aggregation }, store.db);
  const rs = await store.ch.query({ query: plan.sql, query_params: plan.params, format: 'JSONEachRow' });
  const rows = await rs.json<Record<string, string>>();
  const data: UsageRow[] = [];
  for (const r of rows) {
    if (r.row_count === '0') continue;
    const groupBy: Record<string, string> = {};
    q.groupBy.forEach((key, i) => {
      if (key !== 'subject') groupBy[key] = r[plan.groupColumns[i]!] ?? '';
    });
    const value =
      meter.aggregation === 'AVG'
        ? new Decimal(r.total!).div(r.row_count!).toDecimalPlaces(AVG_SCALE, Decimal.ROUND_HALF_UP).toFixed()
        : new Decimal(r.total!).toFixed();
    data.push({
      value,
      windowStart: q.windowSize ? iso(r.window_start_s!) : fromGiven ? new Date(q.fromMs).toISOString() : iso(r.window_start_s!),
      windowEnd: q.windowSize ? iso(r.window_end_s!) : new Date(q.toMs).toISOString(),
      subject: q.groupBy.includes('subject') ? (r.g_subject ?? null) : q.subjects.length === 1 ? q.subjects[0]! : null,
      groupBy,
    });
  }
  return {
    ...(fromGiven ? { from: new Date(q.fromMs).toISOString() } : {}),
    to: new Date(q.toMs).toISOString(),
    ...(q.windowSize ? { windowSize: q.windowSize } : {}),
    data,
    source: plan.source,
  };
}

export interface ReconcileLine {
  meter: string;
  /** Raw events of the meter's event type in the range (whether or not the meter counts them). */
  rawEvents: string;
  /** Per-event values the meter holds (events it counted). */
  values: { count: string; sum: string };
  rollups: Record<'meter_usage_1m' | 'meter_usage_1h' | 'meter_usage_1d', { count: string; sum: string }>;
  /** Raw events of the type with no value for this meter (filtered out, or not countable). */
  uncounted: string;
  ok: boolean;
}

/**
 * Proves rollups are neither ahead of nor behind the raw events: for each meter, over
 * [from, to) (whole UTC days), the count and sum of the per-event values, of each rollup, and
 * the raw events they derive from. `ok` is false if any rollup differs from the values, or if
 * more events were counted than raw events exist.
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
    const values = await one(`SELECT toString(count()) AS count, toString(sum(value)) AS sum FROM ${db}.meter_values WHERE meter_id = {meterId:String} AND ${range('time')}`);
    const rollups = {} as ReconcileLine['rollups'];
    for (const t of ['meter_usage_1m', 'meter_usage_1h', 'meter_usage_1d'] as const) {
      const r = await one(`SELECT toString(countMerge(value_count)) AS count, toString(sumMerge(value_sum)) AS sum FROM ${db}.${t} WHERE meter_id = {meterId:String} AND ${range('window_start')}`);
      rollups[t] = { count: r.count ?? '0', sum: new Decimal(r.sum ?? '0').toFixed() };
    }
    const raw = await one(`SELECT toString(count()) AS count FROM ${db}.events_raw WHERE type = {type:String} AND ${range('time')}`);
    const v = { count: values.count ?? '0', sum: new Decimal(values.sum ?? '0').toFixed() };
    const uncounted = Math.max(0, Number(raw.count ?? 0) - Number(v.count));
    const ok = Object.values(rollups).every((r) => r.count === v.count && r.sum === v.sum) && Number(v.count) <= Number(raw.count ?? 0);
    out.push({ meter: m.slug, rawEvents: raw.count ?? '0', values: v, rollups, uncounted: String(uncounted), ok });
  }
  return out;
}
