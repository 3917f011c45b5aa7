import { Decimal } from '../common/decimal.ts';
import type { Store } from '../common/clickhouse.ts';
import type { Meter } from '../meter/index.ts';
import { RAW_AGG } from './plan.ts';
import { averageOf } from './query.ts';

/**
 * Usage at a cutoff, from `meter_values`: what billing prices. Only rows ingested at or before
 * the cutoff count, so the same cutoff always gives the same numbers (a close is reproducible);
 * rows ingested later are found by the "ingested between" reads and become corrections.
 */

/** A half-open interval [start, end) of event time, in ms. */
export interface TimeRange {
  start: number;
  end: number;
}

/** One meter's events in `ranges` (event time) ingested at or before `cutoffMs`. */
export interface CutoffQuery {
  ranges: TimeRange[];
  cutoffMs: number;
}

/** One subject's share of a CutoffQuery. */
export interface SubjectCutoffQuery extends CutoffQuery {
  subject: string;
}

/** A dimension's value of one per-event row (e.g. `model` of a token event) and the row's value, as exact decimal strings. */
export interface DimensionValue {
  dimension: string;
  value: string;
}

interface Where {
  sql: string;
  params: Record<string, unknown>;
}

/** The WHERE of a cutoff query, built from its parts; the subject condition only when one is named. */
function cutoffWhere(meter: Meter, q: CutoffQuery & { subject?: string }): Where {
  const params: Record<string, unknown> = { meterId: meter.id, cutoff: q.cutoffMs };
  const parts = ['meter_id = {meterId:String}'];
  if (q.subject !== undefined) {
    parts.push('subject = {subject:String}');
    params.subject = q.subject;
  }
  parts.push(`ingested_at <= fromUnixTimestamp64Milli({cutoff:Int64}, 'UTC')`);
  const ranges = q.ranges.map((r, i) => {
    params[`s${i}`] = r.start;
    params[`e${i}`] = r.end;
    return `(time >= fromUnixTimestamp64Milli({s${i}:Int64}, 'UTC') AND time < fromUnixTimestamp64Milli({e${i}:Int64}, 'UTC'))`;
  });
  parts.push(`(${ranges.join(' OR ')})`);
  return { sql: parts.join(' AND '), params };
}

/** A meter's quantity from its aggregate over rows and their count: '0' without rows; AVG through `averageOf`. */
function quantityOf(meter: Meter, r: { q: string; n: string } | undefined): string {
  if (!r || r.n === '0') return '0';
  return meter.aggregation === 'AVG' ? averageOf(r.q, r.n) : new Decimal(r.q).toFixed();
}

/** One subject's quantity of `meter` at the cutoff. */
export async function quantityAtCutoff(store: Store, meter: Meter, q: SubjectCutoffQuery): Promise<string> {
  const w = cutoffWhere(meter, q);
  const rs = await store.ch.query({
    query: `SELECT ${RAW_AGG[meter.aggregation]} AS q, toString(count()) AS n FROM ${store.db}.meter_values WHERE ${w.sql}`,
    query_params: w.params,
    format: 'JSONEachRow',
  });
  const [row] = await rs.json<{ q: string; n: string }>();
  return quantityOf(meter, row);
}

/** Every subject's quantity of `meter` at the cutoff, in one query; subjects without rows are absent. */
export async function quantitiesAtCutoff(store: Store, meter: Meter, q: CutoffQuery): Promise<Map<string, string>> {
  const w = cutoffWhere(meter, q);
  const rs = await store.ch.query({
    query: `SELECT subject, ${RAW_AGG[meter.aggregation]} AS q, toString(count()) AS n FROM ${store.db}.meter_values WHERE ${w.sql} GROUP BY subject`,
    query_params: w.params,
    format: 'JSONEachRow',
  });
  return new Map((await rs.json<{ subject: string; q: string; n: string }>()).map((r) => [r.subject, quantityOf(meter, r)]));
}

/** One subject's quantity of `meter` at the cutoff per value of the group-by key `dimension` (absent key: ''). */
export async function quantitiesByDimensionAtCutoff(store: Store, meter: Meter, q: SubjectCutoffQuery, dimension: string): Promise<Map<string, string>> {
  const w = cutoffWhere(meter, q);
  const rs = await store.ch.query({
    query: `SELECT ${RAW_AGG[meter.aggregation]} AS q, toString(count()) AS n, group_by[{dimKey:String}] AS dim FROM ${store.db}.meter_values WHERE ${w.sql} GROUP BY dim`,
    query_params: { ...w.params, dimKey: dimension },
    format: 'JSONEachRow',
  });
  return new Map((await rs.json<{ q: string; n: string; dim?: string }>()).map((r) => [r.dim ?? '', quantityOf(meter, r)]));
}

/** One subject's per-event values of `meter` at the cutoff, in event order (time, source, id): for prices that rate each event. */
export async function valuesAtCutoff(store: Store, meter: Meter, q: SubjectCutoffQuery): Promise<string[]> {
  const w = cutoffWhere(meter, q);
  const rs = await store.ch.query({ query: `SELECT toString(value) AS v FROM ${store.db}.meter_values WHERE ${w.sql} ORDER BY time, source, id`, query_params: w.params, format: 'JSONCompactEachRow' });
  return (await rs.json<[string]>()).map(([v]) => v);
}

/** As `valuesAtCutoff`, each value with its row's value of the group-by key `dimension`. */
export async function dimensionValuesAtCutoff(store: Store, meter: Meter, q: SubjectCutoffQuery, dimension: string): Promise<DimensionValue[]> {
  const w = cutoffWhere(meter, q);
  const rs = await store.ch.query({
    query: `SELECT group_by[{dimKey:String}] AS dim, toString(value) AS v FROM ${store.db}.meter_values WHERE ${w.sql} ORDER BY time, source, id`,
    query_params: { ...w.params, dimKey: dimension },
    format: 'JSONCompactEachRow',
  });
  return (await rs.json<[string, string]>()).map(([dim, v]) => ({ dimension: dim, value: v }));
}

/** Rows of any meter with event time in `period` ingested in (fromMs, toMs]. */
function ingestedWhere(period: TimeRange, fromMs: number, toMs: number): Where {
  return {
    sql: `time >= fromUnixTimestamp64Milli({ps:Int64}, 'UTC') AND time < fromUnixTimestamp64Milli({pe:Int64}, 'UTC')
                AND ingested_at > fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND ingested_at <= fromUnixTimestamp64Milli({to:Int64}, 'UTC')`,
    params: { ps: period.start, pe: period.end, from: fromMs, to: toMs },
  };
}

/** Subjects with rows (any meter) with event time in `period` ingested in (fromMs, toMs]: whose earlier invoices may need a correction. */
export async function subjectsIngestedBetween(store: Store, period: TimeRange, fromMs: number, toMs: number): Promise<Set<string>> {
  const w = ingestedWhere(period, fromMs, toMs);
  const rs = await store.ch.query({ query: `SELECT DISTINCT subject FROM ${store.db}.meter_values WHERE ${w.sql}`, query_params: w.params, format: 'JSONCompactEachRow' });
  return new Set((await rs.json<[string]>()).map(([subject]) => subject));
}

/** How many rows (any meter) of one subject with event time in `period` were ingested in (fromMs, toMs]. */
export async function countIngestedBetween(store: Store, subject: string, period: TimeRange, fromMs: number, toMs: number): Promise<number> {
  const w = ingestedWhere(period, fromMs, toMs);
  const rs = await store.ch.query({
    query: `SELECT count() AS n FROM ${store.db}.meter_values WHERE subject = {subject:String} AND ${w.sql}`,
    query_params: { subject, ...w.params },
    format: 'JSONEachRow',
  });
  return Number((await rs.json<{ n: string }>())[0]?.n ?? 0);
}
