import { Decimal } from '../common/decimal.ts';
import type { ClickHouseClient, Store } from '../common/clickhouse.ts';
import { AppError } from '../common/errors.ts';
import type { Meter } from '../meter/index.ts';
import type { UsageResult, UsageRow } from './contracts.ts';
import { planUsageQuery, type UsageQuery, type WindowSize } from './plan.ts';
import { unknownTimeZone } from './time-zones.ts';

/** The answer's shape is the API contract (./contracts.ts), shared with the browser code. */
export type { UsageResult, UsageRow } from './contracts.ts';

/** AVG is rounded half-up to 9 decimal places (the scale of stored values). */
export const AVG_SCALE = 9;

/** An AVG meter's value from its exact sum and row count: the one rounding every reader uses. */
export function averageOf(sum: string, count: string): string {
  return new Decimal(sum).div(count).toDecimalPlaces(AVG_SCALE, Decimal.ROUND_HALF_UP).toFixed();
}

const iso = (s: number | string) => new Date(Number(s) * 1000).toISOString().replace('.000Z', 'Z');

/** A usage query of one meter: the planner's query without the meter's own fields. */
export type UsageRequest = Omit<UsageQuery, 'meterId' | 'aggregation'>;

export async function queryUsage(store: Store, meter: Meter, q: UsageRequest, fromGiven: boolean): Promise<UsageResult> {
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
    const value = meter.aggregation === 'AVG' ? averageOf(r.total!, r.row_count!) : new Decimal(r.total!).toFixed();
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

/**
 * Limits of a usage query through the API. Embedded chDB runs a query off the JS thread
 * (/healthz and ingest stay responsive) but one query at a time: while a usage query runs, the
 * processor's writes and every other store call wait. So a query is refused before it runs
 * when its windows alone pass the limit, and ClickHouse stops it at the row or time limit (the
 * time limit is checked while reading; a large GROUP BY can run on past it while merging).
 * Tests lower them to reach them cheaply.
 */
export const USAGE_QUERY_LIMITS = { maxWindows: 100_000, maxResultRows: 100_000, maxExecutionSeconds: 10 };

export const USAGE_QUERY_LIMITS_TEXT =
  `Limits: with from given, at most ${USAGE_QUERY_LIMITS.maxWindows.toLocaleString('en-US')} windows (e.g. windowSize=MINUTE over about 69 days), else 400 USAGE_QUERY_TOO_LARGE before anything runs; ` +
  `at most ${USAGE_QUERY_LIMITS.maxResultRows.toLocaleString('en-US')} result rows (windows × groups), else 400 USAGE_QUERY_TOO_LARGE; ` +
  `at most ${USAGE_QUERY_LIMITS.maxExecutionSeconds} s of query time, else 503 USAGE_QUERY_TIMEOUT (retry after Retry-After, or narrow the query). ` +
  'Narrow a query with a shorter from/to, a larger windowSize, fewer groupBy keys or a subject filter.';

const WINDOW_MS: Record<WindowSize, number> = { MINUTE: 60_000, HOUR: 3_600_000, DAY: 86_400_000 };

/**
 * The store with every `ch.query` bounded by the limits, as a SETTINGS clause of the query: it
 * holds for that query only (chDB would keep `clickhouse_settings` in its one session, for every
 * later query of every component). Everything else is the store's own.
 */
function boundedStore(store: Store, limits: typeof USAGE_QUERY_LIMITS): Store {
  const settings =
    ` SETTINGS max_execution_time = ${limits.maxExecutionSeconds}, timeout_overflow_mode = 'throw',` +
    ` max_result_rows = ${limits.maxResultRows}, result_overflow_mode = 'throw'`;
  const ch = new Proxy(store.ch, {
    get(target, prop) {
      if (prop === 'query') return (params: Parameters<ClickHouseClient['query']>[0]) => target.query({ ...params, query: `${params.query}${settings}` });
      const v: unknown = Reflect.get(target, prop);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  return { ...store, ch };
}

const narrow = 'narrow the query: a shorter from/to range, a larger windowSize (HOUR or DAY), fewer groupBy keys, or a subject filter';

/**
 * A usage query from the API, bounded by USAGE_QUERY_LIMITS: too many windows is refused
 * before it runs (when `from` is given: without it the range starts at the first event), and
 * ClickHouse's row, time and time-zone errors become 4xx/503 errors that say what to change.
 * `tzParam` names the time-zone parameter in errors.
 */
export async function boundedQueryUsage(store: Store, meter: Meter, q: UsageRequest, fromGiven: boolean, tzParam: string): Promise<UsageResult> {
  const limits = { ...USAGE_QUERY_LIMITS };
  const { maxWindows, maxResultRows, maxExecutionSeconds } = limits;
  if (q.windowSize && fromGiven) {
    const windows = Math.ceil((q.toMs - q.fromMs) / WINDOW_MS[q.windowSize]);
    if (windows > maxWindows) {
      throw new AppError(
        'USAGE_QUERY_TOO_LARGE',
        `windowSize=${q.windowSize} from ${new Date(q.fromMs).toISOString()} to ${new Date(q.toMs).toISOString()} gives ${windows.toLocaleString('en-US')} windows, more than the limit of ${maxWindows.toLocaleString('en-US')}; ${narrow}`,
        { details: { limit: { windows: maxWindows }, windows } },
      );
    }
  }
  try {
    return await queryUsage(boundedStore(store, limits), meter, q, fromGiven);
  } catch (err) {
    const type = (err as { type?: unknown }).type;
    if (type === 'TOO_MANY_ROWS_OR_BYTES') {
      throw new AppError('USAGE_QUERY_TOO_LARGE', `the usage query gives more than ${maxResultRows.toLocaleString('en-US')} rows (windows × groups), the limit; ${narrow}`, { cause: err, details: { limit: { rows: maxResultRows } } });
    }
    if (type === 'TIMEOUT_EXCEEDED') {
      throw new AppError('USAGE_QUERY_TIMEOUT', `the usage query ran longer than the limit of ${maxExecutionSeconds} s; retry later or ${narrow}`, {
        cause: err,
        details: { limit: { seconds: maxExecutionSeconds }, retryAfterSeconds: 5 },
      });
    }
    if (/Cannot load time zone/i.test((err as Error).message ?? '')) {
      const field = `query.${tzParam}`;
      throw new AppError('REQUEST_INVALID', `invalid query: ${field}: ${unknownTimeZone(q.timeZone)}`, { cause: err, details: { errors: [{ field, reason: unknownTimeZone(q.timeZone) }] } });
    }
    throw err;
  }
}
