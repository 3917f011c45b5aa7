import type { Aggregation } from '../meter/index.ts';
import type { Source, WindowSize } from './contracts.ts';
import { tzOffsetMinutes } from './time-zones.ts';

/**
 * Plans a usage query: which table answers it exactly and the parameterised SQL. Pure.
 *
 * Rollups are used when they can answer exactly: the range [from, to) and every window
 * boundary must fall on the rollup's granularity. Day rollups are cut in UTC, so a DAY window
 * in another time zone reads the hour rollup (or the minute rollup for zones whose offset is
 * not a whole hour). Anything not aligned to a minute reads `meter_values`, the per-event
 * values, which is exact at any resolution but slower.
 */
export { WindowSizes, type Source, type WindowSize } from './contracts.ts';

export interface UsageQuery {
  meterId: string;
  aggregation: Aggregation;
  fromMs: number;
  toMs: number;
  windowSize?: WindowSize;
  timeZone: string;
  subjects: string[];
  /** Group-by keys of the meter to split by; `subject` splits by subject. */
  groupBy: string[];
  filterGroupBy: Record<string, string[]>;
}

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

/** True if the zone's offset is a multiple of `unitMinutes` everywhere in [from, to] (sampled daily, capped). */
function offsetsAligned(tz: string, fromMs: number, toMs: number, unitMinutes: number): boolean {
  if (tz === 'UTC' || tz === 'Etc/UTC') return true;
  const step = Math.max(DAY, Math.ceil((toMs - fromMs) / 2_000));
  for (let t = Math.max(fromMs, 0); t <= toMs + step; t += step) {
    if (tzOffsetMinutes(tz, Math.min(t, toMs)) % unitMinutes !== 0) return false;
  }
  return true;
}

export function chooseSource(q: Pick<UsageQuery, 'fromMs' | 'toMs' | 'windowSize' | 'timeZone'>): Source {
  const aligned = (unit: number) => q.fromMs % unit === 0 && q.toMs % unit === 0;
  const utc = q.timeZone === 'UTC' || q.timeZone === 'Etc/UTC' || offsetsAligned(q.timeZone, q.fromMs, q.toMs, 1440);
  if (aligned(DAY) && (q.windowSize === undefined || (q.windowSize === 'DAY' && utc))) return 'meter_usage_1d_v2';
  if (aligned(HOUR) && q.windowSize !== 'MINUTE' && (q.windowSize === undefined || offsetsAligned(q.timeZone, q.fromMs, q.toMs, 60))) return 'meter_usage_1h_v2';
  if (aligned(MINUTE)) return 'meter_usage_1m_v2';
  return 'meter_values';
}

/**
 * Each aggregation over a rollup table's states (exact strings); the anomaly scan reads hourly values with it.
 * Sums are Decimal(76, 9) states (sql/006), so SUM and AVG never wrap (up to 67 integer digits).
 */
export const ROLLUP_AGG: Record<Aggregation, string> = {
  SUM: 'toString(sumMerge(value_sum))',
  COUNT: 'toString(countMerge(value_count))',
  UNIQUE_COUNT: 'toString(uniqExactMerge(value_unique))',
  MIN: 'toString(minMerge(value_min))',
  MAX: 'toString(maxMerge(value_max))',
  AVG: 'toString(sumMerge(value_sum))',
  LATEST: 'toString(argMaxMerge(value_latest))',
};
/**
 * Each aggregation over per-event `meter_values` rows (exact strings); the rater's usage at a cutoff uses it too. AVG is the sum: callers divide by the row count.
 * Sums widen each Decimal(38, 9) value to Decimal(76, 9) first: `sum(value)` would return Decimal(38, 9) and wrap.
 */
export const RAW_AGG: Record<Aggregation, string> = {
  SUM: 'toString(sum(toDecimal256(value, 9)))',
  COUNT: 'toString(count())',
  UNIQUE_COUNT: 'toString(uniqExact(value_key))',
  MIN: 'toString(min(value))',
  MAX: 'toString(max(value))',
  AVG: 'toString(sum(toDecimal256(value, 9)))',
  LATEST: 'toString(argMax(value, (time, source, id)))',
};

export interface PlannedQuery {
  source: Source;
  sql: string;
  params: Record<string, unknown>;
  /** Output column names of the group-by keys, in `groupBy` order (`subject` included). */
  groupColumns: string[];
}

export function planUsageQuery(q: UsageQuery, db: string): PlannedQuery {
  const source = chooseSource(q);
  const raw = source === 'meter_values';
  const timeCol = raw ? 'time' : 'window_start';
  const params: Record<string, unknown> = { meterId: q.meterId, from: q.fromMs, to: q.toMs, tz: q.timeZone };
  const select: string[] = [];
  const group: string[] = [];
  if (q.windowSize) {
    const local = `toDateTime(${timeCol}, {tz:String})`;
    const ws = q.windowSize === 'MINUTE' ? `toStartOfMinute(${local})` : q.windowSize === 'HOUR' ? `toStartOfHour(${local})` : `toStartOfDay(${local})`;
    const end = q.windowSize === 'MINUTE' ? 'ws + INTERVAL 1 MINUTE' : q.windowSize === 'HOUR' ? 'ws + INTERVAL 1 HOUR' : 'addDays(ws, 1)';
    select.push(`${ws} AS ws`, 'toUnixTimestamp(ws) AS window_start_s', `toUnixTimestamp(${end}) AS window_end_s`);
    group.push('ws');
  } else {
    select.push(`toUnixTimestamp(min(${timeCol})) AS window_start_s`);
  }
  const groupColumns: string[] = [];
  q.groupBy.forEach((key, i) => {
    if (key === 'subject') {
      select.push('subject AS g_subject');
      group.push('g_subject');
      groupColumns.push('g_subject');
    } else {
      params[`gk${i}`] = key;
      select.push(`group_by[{gk${i}:String}] AS g_${i}`);
      group.push(`g_${i}`);
      groupColumns.push(`g_${i}`);
    }
  });
  select.push(`${(raw ? RAW_AGG : ROLLUP_AGG)[q.aggregation]} AS total`);
  // The row count: AVG divides by it, and a range with no events returns no row at all.
  select.push(raw ? 'toString(count()) AS row_count' : 'toString(countMerge(value_count)) AS row_count');
  const where = [
    'meter_id = {meterId:String}',
    `${timeCol} >= fromUnixTimestamp64Milli({from:Int64}, 'UTC')`,
    `${timeCol} < fromUnixTimestamp64Milli({to:Int64}, 'UTC')`,
  ];
  if (q.subjects.length > 0) {
    params.subjects = q.subjects;
    where.push('subject IN {subjects:Array(String)}');
  }
  Object.entries(q.filterGroupBy).forEach(([key, values], i) => {
    params[`fk${i}`] = key;
    params[`fv${i}`] = values;
    where.push(`group_by[{fk${i}:String}] IN {fv${i}:Array(String)}`);
  });
  const sql =
    `SELECT ${select.join(', ')} FROM ${db}.${source} WHERE ${where.join(' AND ')}` +
    (group.length ? ` GROUP BY ${group.join(', ')} ORDER BY ${group.join(', ')}` : '');
  return { source, sql, params, groupColumns };
}
