import { errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import type { Meter } from '../meter/index.ts';
import type { Customer } from '../rater/index.ts';
import { detect, historyHours } from './detect.ts';
import type { AlertSink, CatalogView, ScanUsage } from './scan-deps.ts';
import type { Anomaly, AnomalyStatus } from './store.ts';
import type { AnomalyKind, DescribeOptions, DetectorParams, HourlySeries } from './types.ts';

const HOUR = 3_600_000;

/** Who resolves an anomaly whose usage is back to normal. */
export const AUTO_RESOLVER = 'meterline';

/** The kinds `detect` judges hour by hour; bill shock and thresholds are per period and stay until someone resolves them. */
export const SERIES_KINDS: readonly AnomalyKind[] = ['spike', 'drop', 'gap'];

/** What auto-resolution needs of the anomaly records (AnomalyStore). */
export interface RecoveryRecords {
  list(filter: { status?: AnomalyStatus; limit?: number }): Promise<Anomaly[]>;
  resolve(id: string, by: string, note: string): Promise<Anomaly>;
}

export interface RecoveryOptions {
  records: RecoveryRecords;
  /** Complete hours in a row without a detection of the anomaly's kind before it resolves. */
  normalHours: number;
}

export interface RecoveryDeps {
  usage: ScanUsage;
  meters: CatalogView<Meter>;
  customers: CatalogView<Customer>;
  alerts: AlertSink;
  logger: Logger;
  params: DetectorParams;
  recovery: RecoveryOptions;
}

/**
 * The kinds `detect` raises on any of the last `hours` hours of `series`: each hour is judged as
 * the scan judged it then (the series cut after that hour). A kind not in the set has been normal
 * for `hours` complete hours in a row.
 */
export function kindsInLastHours(series: HourlySeries, params: DetectorParams, describe: DescribeOptions, hours: number): Set<AnomalyKind> {
  const kinds = new Set<AnomalyKind>();
  for (let k = 0; k < hours && k < series.values.length; k++) {
    for (const d of detect({ startMs: series.startMs, values: series.values.slice(0, series.values.length - k) }, params, describe)) kinds.add(d.kind);
  }
  return kinds;
}

/**
 * Resolves the open (or acknowledged) spikes, drops and gaps whose series has had no detection of
 * their kind for `normalHours` complete hours, as `meterline` with a note, and alerts
 * `anomaly.resolved`. Reads the hourly rollups again only for meters with such an anomaly.
 * Returns how many it resolved.
 */
export async function resolveRecovered(deps: RecoveryDeps, nowMs: number): Promise<number> {
  const { records, normalHours } = deps.recovery;
  const open = [...(await records.list({ status: 'open', limit: 10_000 })), ...(await records.list({ status: 'acknowledged', limit: 10_000 }))].filter((a) => SERIES_KINDS.includes(a.kind) && a.meter !== '');
  const byMeter = new Map<string, Anomaly[]>();
  for (const a of open) (byMeter.get(a.meter) ?? byMeter.set(a.meter, []).get(a.meter)!).push(a);
  const endMs = Math.floor(nowMs / HOUR) * HOUR;
  const hours = historyHours(deps.params);
  const startMs = endMs - hours * HOUR;
  let resolved = 0;
  for (const [slug, anomalies] of byMeter) {
    const meter = deps.meters.get(slug);
    if (!meter) continue;
    try {
      const subjects = new Set(anomalies.map((a) => a.customer));
      const bySubject = new Map<string, number[]>();
      for (const { subject, hourStartMs, value } of await deps.usage.hourly(meter, startMs, endMs)) {
        if (!subjects.has(subject)) continue;
        let arr = bySubject.get(subject);
        if (!arr) bySubject.set(subject, (arr = new Array<number>(hours).fill(0)));
        arr[(hourStartMs - startMs) / HOUR] = Number(value);
      }
      for (const a of anomalies) {
        // Not judged before the anomaly's own window has closed.
        if (Date.parse(a.windowEnd) > endMs - normalHours * HOUR) continue;
        const values = bySubject.get(a.customer) ?? new Array<number>(hours).fill(0);
        const timeZone = deps.customers.get(a.customer)?.timeZone ?? 'UTC';
        if (kindsInLastHours({ startMs, values }, deps.params, { unit: meter.name ?? meter.slug, timeZone }, normalHours).has(a.kind)) continue;
        const note = `usage back to normal: no ${a.kind} for ${normalHours} complete hour${normalHours === 1 ? '' : 's'} (to ${new Date(endMs).toISOString()})`;
        const r = await records.resolve(a.id, AUTO_RESOLVER, note);
        resolved++;
        deps.alerts.dispatch('anomaly.resolved', r);
      }
    } catch (err) {
      deps.logger.error({ err: errorMessage(err), meter: slug }, 'resolving recovered anomalies failed for one meter');
    }
  }
  return resolved;
}
