import { Decimal } from '../common/decimal.ts';
import { subscriptionEnd, type BillingCatalog } from './billing-catalog.ts';
import { CLOSE_SAFETY_MS, type BillingOptions, type BillingReads, type InvoiceComputer } from './invoice-compute.ts';
import { buildInvoice, usageGroups } from './invoice-builder.ts';
import type { InvoiceStore } from './invoice-store.ts';
import type { Invoice } from './invoice-types.ts';
import type { Period } from './periods.ts';
import type { RateInput } from './pricing/types.ts';

const ms = (s: string) => Date.parse(s);

export interface InvoiceProjectionDeps {
  computer: InvoiceComputer;
  catalog: BillingCatalog;
  invoices: InvoiceStore;
  /** Direct reads: a projection is served to API requests, never inside a close run. */
  reads: BillingReads;
  options: Pick<BillingOptions, 'graceMs' | 'rounding' | 'safetyMs'>;
}

/** Invoices not finalized yet, computed now: drafts of periods in their grace period, and the current period's projection. */
export class InvoiceProjection {
  constructor(private readonly deps: InvoiceProjectionDeps) {}

  /** Draft invoices: periods that ended but are not finalized yet (in their grace period), computed now. */
  async drafts(nowMs: number, customer?: string): Promise<Invoice[]> {
    const { catalog, options } = this.deps;
    const safetyMs = options.safetyMs ?? CLOSE_SAFETY_MS;
    const starts = await this.deps.invoices.finalizedStarts();
    const out: Invoice[] = [];
    for (const sub of catalog.subscriptions().filter((s) => !customer || s.customer === customer)) {
      const plans = catalog.planSubset(sub);
      const c = catalog.customer(sub.customer);
      const current = catalog.periodOf(sub, nowMs, plans, c);
      const prev = catalog.periodOf(sub, current.start - 1, plans, c);
      if (prev.end > ms(sub.phases[0]!.start) && prev.start < subscriptionEnd(sub) && !(starts.get(sub.id) ?? new Set()).has(prev.start) && prev.end + options.graceMs + safetyMs > nowMs) {
        out.push((await this.deps.computer.compute(sub, prev, nowMs, this.deps.reads)).invoice);
      }
    }
    return out;
  }

  /**
   * The projected invoice of a customer's current period: the draft so far (usage up to now),
   * and a projection to the period end at the current run rate (usage quantities scaled by
   * period length / elapsed time, for SUM and COUNT meters; others are kept as they are).
   */
  async projected(customerKey: string, nowMs: number): Promise<{ period: Period; soFar: Invoice; projected: Invoice; elapsedShare: string }[]> {
    const { catalog, computer, reads } = this.deps;
    const subs = catalog.subscriptions().filter((s) => s.customer === customerKey);
    const out = [];
    for (const sub of subs) {
      if (ms(sub.phases[0]!.start) > nowMs || subscriptionEnd(sub) <= nowMs) continue;
      const period = catalog.periodOf(sub, nowMs);
      const { invoice: soFar, snapshot, items } = await computer.compute(sub, period, nowMs, reads);
      const elapsed = new Decimal(nowMs - period.start).div(period.end - period.start);
      // Adjustments, corrections and credits are known amounts: the projection carries them as the invoice so far does.
      const { adjustments, oneTime, corrections, credits } = items;
      const usage = await computer.usageFor(snapshot, period, nowMs, adjustments, reads);
      const scaled: Record<string, RateInput> = {};
      for (const g of usageGroups(snapshot.subscription, snapshot.plans, period)) {
        const meter = catalog.meterFor(g.meter);
        const u = usage[g.id] ?? { quantity: '0' };
        const scalable = (meter.aggregation === 'SUM' || meter.aggregation === 'COUNT') && elapsed.gt(0);
        const scale = (q: string) => (scalable ? new Decimal(q).div(elapsed).toDecimalPlaces(9, Decimal.ROUND_HALF_UP).toFixed() : q);
        scaled[g.id] = {
          quantity: scale(u.quantity),
          ...(u.byDimension ? { byDimension: Object.fromEntries(Object.entries(u.byDimension).map(([k, v]) => [k, { quantity: scale(v.quantity) }])) } : {}),
          ...(u.values ? { values: u.values } : {}),
        };
      }
      const end = subscriptionEnd(sub);
      const first = catalog.periodOf(sub, ms(sub.phases[0]!.start));
      const projected = buildInvoice({
        invoiceId: soFar.id,
        customer: snapshot.customer,
        subscription: snapshot.subscription,
        plans: snapshot.plans,
        period,
        firstPeriod: first.start === period.start,
        ...(end > period.end ? { nextPeriod: catalog.periodOf(sub, period.end) } : {}),
        usage: scaled,
        cutoffMs: nowMs,
        rounding: this.deps.options.rounding,
        adjustments: oneTime,
        corrections,
        credits,
      });
      out.push({ period, soFar, projected, elapsedShare: elapsed.toDecimalPlaces(6).toFixed() });
    }
    return out;
  }
}
