import { Decimal } from '../common/decimal.ts';
import { errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import type { Meter } from '../meter/index.ts';
import type { Customer } from '../rater/index.ts';
import { resolveRecovered, type RecoveryOptions } from './auto-resolve.ts';
import { billShock, detect, historyHours, thresholdCrossings } from './detect.ts';
import type { AlertSink, AnomalyRecords, BillingView, CatalogView, ScanLease, ScanUsage } from './scan-deps.ts';
import type { Detection, DetectorParams } from './types.ts';

const HOUR = 3_600_000;

/** A customer-set usage cap on one meter per billing period, with the percentages to alert at. */
export interface Threshold {
  id: string;
  customer: string;
  meter: string;
  /** Quantity per billing period (calendar month in UTC for customers without a subscription). */
  cap: string;
  percents: number[];
  createdAt: string;
}

/** The scan's collaborators, as the interfaces of `scan-deps.ts`; `cli/runtime.ts` hands in the real ones. */
export interface ScanDeps {
  usage: ScanUsage;
  meters: CatalogView<Meter>;
  customers: CatalogView<Customer>;
  thresholds: CatalogView<Threshold>;
  billing?: BillingView;
  anomalies: AnomalyRecords;
  alerts: AlertSink;
  leases: ScanLease;
  logger: Logger;
  params: DetectorParams;
  /** Projected invoice / median of the last three invoices above which a bill shock is raised. */
  billShockRatio: number;
  /** Resolve spikes, drops and gaps once usage is back to normal (auto-resolve.ts); unset: only people resolve. */
  recovery?: RecoveryOptions;
}

export interface ScanResult {
  ran: boolean;
  series: number;
  detections: number;
  opened: number;
  updated: number;
}

/** Aggregations whose hourly values are counts or amounts worth scoring. */
const SCORED: readonly Meter['aggregation'][] = ['SUM', 'COUNT', 'UNIQUE_COUNT'];

/**
 * One anomaly scan (run every few minutes by the scheduler, under a lease so only one runs):
 * for every customer × meter, the hourly rollups of the last `baselineWeeks` weeks are scored
 * by the pure `detect`, judging the last complete hour; bill shock compares each customer's
 * projected invoice with their last invoices; thresholds compare period-to-date usage with the
 * customer's caps. A detection opens an anomaly (and alerts) or updates the open one (no new
 * alert), so an ongoing anomaly alerts once, not once per scan.
 */
export class AnomalyScanner {
  constructor(private readonly deps: ScanDeps) {}

  async scan(nowMs: number): Promise<ScanResult> {
    const r = await this.deps.leases.withLease('anomaly-scan', () => this.scanUnlocked(nowMs), this.deps.logger);
    return r.ran ? r.value : { ran: false, series: 0, detections: 0, opened: 0, updated: 0 };
  }

  private async record(customer: string, meter: string, d: Detection, nowMs: number, counts: ScanResult, detail?: Record<string, unknown>, escalation = false) {
    counts.detections++;
    const { anomaly, created } = await this.deps.anomalies.upsert(customer, meter, d, nowMs, detail);
    if (created) {
      counts.opened++;
      this.deps.alerts.dispatch('anomaly.opened', anomaly);
    } else {
      counts.updated++;
      if (escalation) this.deps.alerts.dispatch('anomaly.escalated', anomaly);
    }
  }

  private async scanUnlocked(nowMs: number): Promise<ScanResult> {
    const counts: ScanResult = { ran: true, series: 0, detections: 0, opened: 0, updated: 0 };
    const { usage, params } = this.deps;
    const endMs = Math.floor(nowMs / HOUR) * HOUR; // the last complete hour ends here
    const hours = historyHours(params);
    const startMs = endMs - hours * HOUR;
    for (const meter of this.deps.meters.list()) {
      if (!SCORED.includes(meter.aggregation)) continue;
      const bySubject = new Map<string, number[]>();
      for (const { subject, hourStartMs, value } of await usage.hourly(meter, startMs, endMs)) {
        let arr = bySubject.get(subject);
        if (!arr) bySubject.set(subject, (arr = new Array<number>(hours).fill(0)));
        arr[(hourStartMs - startMs) / HOUR] = Number(value);
      }
      for (const [subject, values] of bySubject) {
        counts.series++;
        const timeZone = this.deps.customers.get(subject)?.timeZone ?? 'UTC';
        try {
          for (const d of detect({ startMs, values }, params, { unit: meter.name ?? meter.slug, timeZone })) await this.record(subject, meter.slug, d, nowMs, counts);
        } catch (err) {
          this.deps.logger.error({ err: errorMessage(err), subject, meter: meter.slug }, 'anomaly scoring failed for one series');
        }
      }
    }
    await this.resolveRecovered(nowMs);
    await this.scanBillShock(nowMs, counts);
    await this.scanThresholds(nowMs, counts);
    return counts;
  }

  private async resolveRecovered(nowMs: number): Promise<void> {
    const recovery = this.deps.recovery;
    if (!recovery) return;
    const resolved = await resolveRecovered({ ...this.deps, recovery }, nowMs);
    if (resolved > 0) this.deps.logger.info({ resolved }, 'anomalies resolved: usage back to normal');
  }

  private async scanBillShock(nowMs: number, counts: ScanResult): Promise<void> {
    const billing = this.deps.billing;
    if (!billing) return;
    for (const customer of this.deps.customers.list()) {
      try {
        const projected = await billing.projected(customer.key, nowMs);
        if (projected.length === 0) continue;
        const total = projected.reduce((a, p) => a.plus(p.projected.total), new Decimal(0));
        const last = (await billing.finalized({ customer: customer.key })).slice(-3).map((s) => Number(s.invoice.total));
        const p = projected[0]!;
        const d = billShock(total.toNumber(), last, { ratio: this.deps.billShockRatio, currency: customer.currency, windowStartMs: p.period.start, windowEndMs: p.period.end });
        if (d) await this.record(customer.key, '', d, nowMs, counts);
      } catch (err) {
        this.deps.logger.error({ err: errorMessage(err), customer: customer.key }, 'bill shock check failed for one customer');
      }
    }
  }

  private async scanThresholds(nowMs: number, counts: ScanResult): Promise<void> {
    for (const t of this.deps.thresholds.list()) {
      const meter = this.deps.meters.get(t.meter);
      if (!meter) continue;
      try {
        const sub = this.deps.billing && this.deps.customers.get(t.customer) ? this.deps.billing.periodForCustomer(t.customer, nowMs) : undefined;
        const d = new Date(nowMs);
        const period = sub ?? { start: Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1), end: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) };
        const usage = await this.deps.usage.query(meter, { fromMs: period.start, toMs: Math.min(period.end, Math.ceil(nowMs / 60_000) * 60_000), timeZone: 'UTC', subjects: [t.customer], groupBy: [], filterGroupBy: {} });
        const used = Number(usage.data[0]?.value ?? '0');
        const [open] = (await this.deps.anomalies.list({ customer: t.customer, meter: t.meter, kind: 'threshold' })).filter((a) => a.status !== 'resolved' && a.detail.thresholdId === t.id && a.detail.periodStart === period.start);
        const already = (open?.detail.alerted as number[] | undefined) ?? [];
        const crossed = thresholdCrossings(used, Number(t.cap), t.percents, already);
        if (crossed.length === 0) continue;
        const top = Math.max(...crossed);
        const pct = Math.round((used / Number(t.cap)) * 100);
        const detection: Detection = {
          kind: 'threshold',
          severity: top >= 100 ? 'critical' : 'warning',
          score: used / Number(t.cap),
          windowStartMs: period.start,
          windowEndMs: period.end,
          observed: used,
          baseline: Number(t.cap),
          spread: 0,
          message: `${t.customer} has used ${used.toLocaleString('en-US')} of ${Number(t.cap).toLocaleString('en-US')} ${meter.name ?? meter.slug} this period (${pct}%), past the ${top}% alert`,
        };
        await this.record(t.customer, t.meter, detection, nowMs, counts, { thresholdId: t.id, periodStart: period.start, alerted: [...already, ...crossed].sort((a, b) => a - b) }, open !== undefined);
      } catch (err) {
        this.deps.logger.error({ err: errorMessage(err), threshold: t.id }, 'threshold check failed');
      }
    }
  }
}
