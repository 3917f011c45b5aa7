import type { Store } from '../common/clickhouse.ts';
import { MAINTENANCE_LEASE, type Leases } from '../common/lease.ts';
import type { Logger } from '../common/logger.ts';
import { AppError } from '../common/errors.ts';
import type { Meter } from '../meter/index.ts';
import { ROLLUP_AGG } from './plan.ts';
import { boundedQueryUsage, queryUsage, type UsageRequest, type UsageResult } from './query.ts';
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
}
