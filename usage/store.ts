import type { Store } from '../common/clickhouse.ts';
import { MAINTENANCE_LEASE, type Leases } from '../common/lease.ts';
import type { Logger } from '../common/logger.ts';
import { AppError } from '../common/errors.ts';
import type { Meter } from '../meter/index.ts';
import { Decimal } from '../common/decimal.ts';
import { RAW_AGG, ROLLUP_AGG } from './plan.ts';
import {
  countIngestedBetween,
  dimensionValuesAtCutoff,
  quantitiesAtCutoff,
  quantitiesByDimensionAtCutoff,
  quantityAtCutoff,
  subjectsIngestedBetween,
  valuesAtCutoff,
  type CutoffQuery,
  type DimensionValue,
  type SubjectCutoffQuery,
  type TimeRange,
} from './cutoff.ts';
import { averageOf, boundedQueryUsage, queryUsage, USAGE_QUERY_LIMITS, type UsageRequest, type UsageResult } from './query.ts';
import { reconcile, type ReconcileLine } from './reconcile.ts';
import { repair, type RepairResult } from './repair.ts';
import { useStoreTimeZones } from './time-zones.ts';

/** One subject's value of a meter in one hour, from the hourly rollup (an exact decimal string). */
export interface HourlyValue {
  subject: string;
  hourStartMs: number;
  value: string;
}

/**
 * Every read of usage, for the components that price, watch and serve it (rater, anomaly, api):
 * they receive this interface, never the ClickHouse client. The tables behind it (`meter_values`
 * and the rollups) are written by the processor alone.
 */
export interface UsageStore {
  /**
   * Usage of one meter over [from, to), per window and group, from the table that answers it
   * exactly (see `planUsageQuery`). `fromGiven`: the caller named `from` (else the first
   * window starts at the first event). `bounded`: an API request, held to USAGE_QUERY_LIMITS,
   * whose errors name the time-zone parameter `tzParam`.
   */
  query(meter: Meter, q: UsageRequest, opts?: { fromGiven?: boolean; bounded?: { tzParam: string } }): Promise<UsageResult>;
  /** Hourly values of a meter per subject over [fromMs, toMs) (whole hours), from the hour rollup; hours without events are absent. */
  hourly(meter: Meter, fromMs: number, toMs: number): Promise<HourlyValue[]>;
  /** Proves exactly-once per event for each meter over [from, to): see `reconcile`. */
  reconcile(meters: Meter[], opts: { fromMs: number; toMs: number; subject?: string }): Promise<ReconcileLine[]>;
  /** Restores exactly-once over [from, to) under the lease `maintenance.writes`: see `repair`. Refused without leases. */
  repair(meters: Meter[], opts: { fromMs: number; toMs: number }): Promise<RepairResult>;
  /** The time zones the store knows; they are also the ones requests may name from then on (`canonicalTimeZone`). */
  loadTimeZones(): Promise<string[]>;

  // Usage at a cutoff (what billing prices; see usage/cutoff.ts): rows ingested at or before `cutoffMs`.
  /** One subject's quantity of a meter over the ranges at the cutoff ('0' without rows). */
  quantityAtCutoff(meter: Meter, q: SubjectCutoffQuery): Promise<string>;
  /** Every subject's quantity, in one read (subjects without rows are absent): a close run over many customers. */
  quantitiesAtCutoff(meter: Meter, q: CutoffQuery): Promise<Map<string, string>>;
  /** One subject's quantity per value of the group-by key `dimension`. */
  quantitiesByDimensionAtCutoff(meter: Meter, q: SubjectCutoffQuery, dimension: string): Promise<Map<string, string>>;
  /** One subject's per-event values in event order (time, source, id). */
  valuesAtCutoff(meter: Meter, q: SubjectCutoffQuery): Promise<string[]>;
  /** As `valuesAtCutoff`, each with its value of the group-by key `dimension`. */
  dimensionValuesAtCutoff(meter: Meter, q: SubjectCutoffQuery, dimension: string): Promise<DimensionValue[]>;
  /** Subjects with rows (any meter) with event time in `period` ingested in (fromMs, toMs]. */
  subjectsIngestedBetween(period: TimeRange, fromMs: number, toMs: number): Promise<Set<string>>;
  /** How many rows (any meter) of `subject` with event time in `period` were ingested in (fromMs, toMs]. */
  countIngestedBetween(subject: string, period: TimeRange, fromMs: number, toMs: number): Promise<number>;
  /**
   * Each subject's value of `meter` over the union of `ranges` (event time, every row stored now),
   * exact for every aggregation, held to USAGE_QUERY_LIMITS: SUM and COUNT add one bounded usage
   * query per range (each from the rollup that answers it exactly); the other aggregations over
   * one range the same way, over several one read of `meter_values` across their union (their
   * values do not add up across ranges). `subjects`: only these (absent: every subject). Subjects
   * without rows are absent. The unbilled-usage report reads it (api/routes/unbilled.ts).
   */
  valuesOverRanges(meter: Meter, q: { ranges: TimeRange[]; subjects?: string[] }): Promise<Map<string, string>>;
  /**
   * Per subject, its rows (any meter) with event time at or after `timeFromMs` ingested after
   * `afterMs`: how many, and how many of them after `splitMs` (>= afterMs). One read, so a
   * watcher of new usage (the API's accounts cache) compares counts over a fixed watermark and
   * moves it to `splitMs` with the second count as its new baseline, missing no row in between.
   */
  ingestedCounts(q: IngestedCountsQuery): Promise<Map<string, IngestedCount>>;
}

export interface IngestedCountsQuery {
  afterMs: number;
  splitMs: number;
  timeFromMs: number;
}

export interface IngestedCount {
  count: number;
  afterSplit: number;
}

export interface ClickHouseUsageStoreDeps {
  store: Store;
  /** Repair holds a lease; without leases repair is refused. */
  leases?: Leases;
  logger?: Logger;
}

/** The UsageStore over ClickHouse (embedded chDB or a server): the tables of sql/. */
export class ClickHouseUsageStore implements UsageStore {
  constructor(private readonly deps: ClickHouseUsageStoreDeps) {}

  query(meter: Meter, q: UsageRequest, opts: { fromGiven?: boolean; bounded?: { tzParam: string } } = {}): Promise<UsageResult> {
    const fromGiven = opts.fromGiven ?? true;
    return opts.bounded ? boundedQueryUsage(this.deps.store, meter, q, fromGiven, opts.bounded.tzParam) : queryUsage(this.deps.store, meter, q, fromGiven);
  }

  async hourly(meter: Meter, fromMs: number, toMs: number): Promise<HourlyValue[]> {
    const { ch, db } = this.deps.store;
    const rs = await ch.query({
      query: `SELECT subject, toString(toUnixTimestamp(window_start)) AS h, ${ROLLUP_AGG[meter.aggregation]} AS v FROM ${db}.meter_usage_1h_v2
              WHERE meter_id = {meterId:String} AND window_start >= fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND window_start < fromUnixTimestamp64Milli({to:Int64}, 'UTC')
              GROUP BY subject, window_start ORDER BY subject`,
      query_params: { meterId: meter.id, from: fromMs, to: toMs },
      format: 'JSONCompactEachRow',
    });
    return (await rs.json<[string, string, string]>()).map(([subject, h, v]) => ({ subject, hourStartMs: Number(h) * 1000, value: v }));
  }

  reconcile(meters: Meter[], opts: { fromMs: number; toMs: number; subject?: string }): Promise<ReconcileLine[]> {
    return reconcile(this.deps.store, meters, opts);
  }

  repair(meters: Meter[], opts: { fromMs: number; toMs: number }): Promise<RepairResult> {
    const { leases } = this.deps;
    if (!leases) {
      throw new AppError('REPAIR_UNAVAILABLE', `this process has no NATS leases to hold ${MAINTENANCE_LEASE}, so it cannot stop the processor's writes; run repair through a \`meterline start\` (or api role) with the leases wired`);
    }
    return repair({ store: this.deps.store, leases, logger: this.deps.logger }, meters, opts);
  }

  async loadTimeZones(): Promise<string[]> {
    const rs = await this.deps.store.ch.query({ query: 'SELECT time_zone FROM system.time_zones', format: 'JSONEachRow' });
    const zones = (await rs.json<{ time_zone: string }>()).map((r) => r.time_zone);
    useStoreTimeZones(zones);
    return zones;
  }

  quantityAtCutoff(meter: Meter, q: SubjectCutoffQuery): Promise<string> {
    return quantityAtCutoff(this.deps.store, meter, q);
  }

  quantitiesAtCutoff(meter: Meter, q: CutoffQuery): Promise<Map<string, string>> {
    return quantitiesAtCutoff(this.deps.store, meter, q);
  }

  quantitiesByDimensionAtCutoff(meter: Meter, q: SubjectCutoffQuery, dimension: string): Promise<Map<string, string>> {
    return quantitiesByDimensionAtCutoff(this.deps.store, meter, q, dimension);
  }

  valuesAtCutoff(meter: Meter, q: SubjectCutoffQuery): Promise<string[]> {
    return valuesAtCutoff(this.deps.store, meter, q);
  }

  dimensionValuesAtCutoff(meter: Meter, q: SubjectCutoffQuery, dimension: string): Promise<DimensionValue[]> {
    return dimensionValuesAtCutoff(this.deps.store, meter, q, dimension);
  }

  subjectsIngestedBetween(period: TimeRange, fromMs: number, toMs: number): Promise<Set<string>> {
    return subjectsIngestedBetween(this.deps.store, period, fromMs, toMs);
  }

  countIngestedBetween(subject: string, period: TimeRange, fromMs: number, toMs: number): Promise<number> {
    return countIngestedBetween(this.deps.store, subject, period, fromMs, toMs);
  }

  async valuesOverRanges(meter: Meter, q: { ranges: TimeRange[]; subjects?: string[] }): Promise<Map<string, string>> {
    const subjects = q.subjects ?? [];
    if (q.ranges.length === 0 || (q.subjects && q.subjects.length === 0)) return new Map();
    if (q.ranges.length > 1 && meter.aggregation !== 'SUM' && meter.aggregation !== 'COUNT') return unionValues(this.deps.store, meter, q.ranges, subjects);
    const out = new Map<string, Decimal>();
    for (const r of q.ranges) {
      const res = await boundedQueryUsage(this.deps.store, meter, { fromMs: r.start, toMs: r.end, timeZone: 'UTC', subjects, groupBy: ['subject'], filterGroupBy: {} }, true, 'timeZone');
      for (const row of res.data) if (row.subject !== null) out.set(row.subject, (out.get(row.subject) ?? new Decimal(0)).plus(row.value));
    }
    return new Map([...out].map(([s, v]) => [s, v.toFixed()]));
  }

  async ingestedCounts(q: IngestedCountsQuery): Promise<Map<string, IngestedCount>> {
    const { ch, db } = this.deps.store;
    // The event-time bound prunes partitions: meter_values is not ordered by ingested_at.
    const rs = await ch.query({
      query: `SELECT subject, toString(count()) AS n, toString(countIf(ingested_at > fromUnixTimestamp64Milli({split:Int64}, 'UTC'))) AS m FROM ${db}.meter_values
              WHERE time >= fromUnixTimestamp64Milli({timeFrom:Int64}, 'UTC') AND ingested_at > fromUnixTimestamp64Milli({after:Int64}, 'UTC')
              GROUP BY subject`,
      query_params: { split: q.splitMs, timeFrom: q.timeFromMs, after: q.afterMs },
      format: 'JSONCompactEachRow',
    });
    return new Map((await rs.json<[string, string, string]>()).map(([subject, n, m]) => [subject, { count: Number(n), afterSplit: Number(m) }]));
  }
}

/**
 * A non-additive meter's value per subject over the union of several ranges, from `meter_values`
 * in one read, with the usage API's row and time limits (as a SETTINGS clause: chDB would keep
 * session settings for every later query).
 */
async function unionValues(store: Store, meter: Meter, ranges: TimeRange[], subjects: string[]): Promise<Map<string, string>> {
  const params: Record<string, unknown> = { meterId: meter.id, subjects };
  const where = ranges.map((r, i) => {
    params[`s${i}`] = r.start;
    params[`e${i}`] = r.end;
    return `(time >= fromUnixTimestamp64Milli({s${i}:Int64}, 'UTC') AND time < fromUnixTimestamp64Milli({e${i}:Int64}, 'UTC'))`;
  });
  const { maxResultRows, maxExecutionSeconds } = USAGE_QUERY_LIMITS;
  try {
    const rs = await store.ch.query({
      query: `SELECT subject, ${RAW_AGG[meter.aggregation]} AS q, toString(count()) AS n FROM ${store.db}.meter_values
              WHERE meter_id = {meterId:String} AND (${where.join(' OR ')})${subjects.length ? ' AND subject IN {subjects:Array(String)}' : ''} GROUP BY subject
              SETTINGS max_execution_time = ${maxExecutionSeconds}, timeout_overflow_mode = 'throw', max_result_rows = ${maxResultRows}, result_overflow_mode = 'throw'`,
      query_params: params,
      format: 'JSONEachRow',
    });
    const rows = await rs.json<{ subject: string; q: string; n: string }>();
    return new Map(rows.map((r) => [r.subject, meter.aggregation === 'AVG' ? averageOf(r.q, r.n) : new Decimal(r.q).toFixed()]));
  } catch (err) {
    const type = (err as { type?: unknown }).type;
    if (type === 'TOO_MANY_ROWS_OR_BYTES') throw new AppError('USAGE_QUERY_TOO_LARGE', `more than ${maxResultRows.toLocaleString('en-US')} subjects used meter ${meter.slug}; ask for fewer subjects`, { cause: err, details: { limit: { rows: maxResultRows } } });
    if (type === 'TIMEOUT_EXCEEDED') throw new AppError('USAGE_QUERY_TIMEOUT', `reading meter ${meter.slug} ran longer than the limit of ${maxExecutionSeconds} s; retry later`, { cause: err, details: { limit: { seconds: maxExecutionSeconds }, retryAfterSeconds: 5 } });
    throw err;
  }
}
