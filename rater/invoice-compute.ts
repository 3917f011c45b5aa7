import { createHash } from 'node:crypto';
import { Decimal } from '../common/decimal.ts';
import type { Meter } from '../meter/index.ts';
import type { SubjectCutoffQuery, UsageStore } from '../usage/index.ts';
import type { Adjustment, AdjustmentStore } from './adjustments.ts';
import { subscriptionEnd, type BillingCatalog } from './billing-catalog.ts';
import type { Subscription } from './catalog.ts';
import { buildInvoice, usageAmounts, usageGroups, type CorrectionLine, type CreditGrant, type OneTimeAdjustment, type RoundingMode, type UsageGroup } from './invoice-builder.ts';
import type { InvoiceStore, Snapshot, StoredInvoice } from './invoice-store.ts';
import { lineSource, type Invoice } from './invoice-types.ts';
import type { Period } from './periods.ts';
import type { Price, RateInput } from './pricing/types.ts';

export interface BillingOptions {
  graceMs: number;
  rounding: RoundingMode;
  numberPrefix: string;
  safetyMs?: number;
}

/** Default extra time after a period's cutoff before it is finalized: rows stamped just before the cutoff are visible by then. */
export const CLOSE_SAFETY_MS = 60_000;
/** How many earlier periods a close looks back at for late usage (corrections). */
const CORRECTION_LOOKBACK = 12;

/** The usage reads billing makes (UsageStore satisfies it; unit tests hand in an in-memory one). */
export type BillingUsage = Pick<
  UsageStore,
  'quantityAtCutoff' | 'quantitiesAtCutoff' | 'quantitiesByDimensionAtCutoff' | 'valuesAtCutoff' | 'dimensionValuesAtCutoff' | 'subjectsIngestedBetween' | 'countIngestedBetween'
>;

/** What an invoice carries besides fees and usage (see `InvoiceComputer.oneTimeItems`). */
export interface OneTimeItems {
  adjustments: Adjustment[];
  oneTime: OneTimeAdjustment[];
  corrections: CorrectionLine[];
  credits: CreditGrant[];
}

const iso = (ms: number) => new Date(ms).toISOString();
const ms = (s: string) => Date.parse(s);

/** The id of the invoice of a subscription's period: the same close always gives the same id. */
export function invoiceId(subscriptionId: string, periodStartMs: number): string {
  return `inv_${createHash('sha256').update(`${subscriptionId}\u0000${periodStartMs}`).digest('hex').slice(0, 24)}`;
}

/**
 * The reads a computation makes that a close run over many subscriptions batches: a close
 * passes its CloseContext (close.ts), everything else the direct reads (`directReads`).
 */
export interface BillingReads {
  /** The customer's finalized invoices, oldest period first. */
  finalized(customer: string): Promise<StoredInvoice[]>;
  adjustments(customer: string): Promise<Adjustment[]>;
  /** One subject's quantity of `meter` at the cutoff (see UsageStore.quantityAtCutoff). */
  quantity(meter: Meter, q: SubjectCutoffQuery): Promise<string>;
  /** Whether `customer` has rows with event time in `period` ingested in (fromMs, toMs]. */
  ingestedBetween(customer: string, period: Period, fromMs: number, toMs: number): Promise<boolean>;
}

/** Reads straight from the stores, one query each: what API requests (drafts, projections) use. */
export function directReads(d: { invoices: InvoiceStore; adjustments: AdjustmentStore; usage: BillingUsage }): BillingReads {
  return {
    finalized: (customer) => d.invoices.finalized({ customer }),
    adjustments: (customer) => d.adjustments.list(customer),
    quantity: (meter, q) => d.usage.quantityAtCutoff(meter, q),
    ingestedBetween: async (customer, period, fromMs, toMs) => (await d.usage.countIngestedBetween(customer, period, fromMs, toMs)) > 0,
  };
}

export interface InvoiceComputerDeps {
  usage: BillingUsage;
  catalog: BillingCatalog;
  options: Pick<BillingOptions, 'rounding'>;
}

/**
 * An invoice of a subscription's period at a cutoff: usage read with `ingested_at <= cutoff`
 * (so the same cutoff gives the same lines), one-time items, and corrections of earlier
 * finalized periods that gained usage since they were last billed.
 */
export class InvoiceComputer {
  constructor(private readonly deps: InvoiceComputerDeps) {}

  /** Usage of one group (a charge over its ranges) for a customer, counting events ingested at or before `cutoffMs`. */
  async measure(customer: string, group: UsageGroup, cutoffMs: number, corrections: Adjustment[], reads: BillingReads): Promise<RateInput> {
    const { usage } = this.deps;
    const meter = this.deps.catalog.meterFor(group.meter);
    const q: SubjectCutoffQuery = { subject: customer, ranges: group.ranges, cutoffMs };
    // Manual usage corrections (SUM and COUNT meters) for this meter in this group's ranges.
    const delta = corrections
      .filter((a) => a.meter === group.meter && a.periodStart !== null && group.ranges.some((r) => ms(a.periodStart!) >= r.start && ms(a.periodStart!) < r.end))
      .reduce((acc, a) => acc.plus(a.quantity), new Decimal(0));
    const price: Price = group.price;
    const needsValues = price.model === 'percentage' || (price.model === 'dimensional' && [...Object.values(price.prices), price.default].some((p) => p?.model === 'percentage'));
    if (price.model === 'dimensional') {
      const byDimension: NonNullable<RateInput['byDimension']> = {};
      for (const [dim, quantity] of await usage.quantitiesByDimensionAtCutoff(meter, q, price.dimension)) byDimension[dim] = { quantity };
      if (needsValues) {
        for (const { dimension: dim, value: v } of await usage.dimensionValuesAtCutoff(meter, q, price.dimension)) (byDimension[dim] ??= { quantity: '0' }).values = [...(byDimension[dim]?.values ?? []), v];
      }
      const total = Object.values(byDimension).reduce((a, d) => a.plus(d.quantity), new Decimal(0));
      return { quantity: total.toFixed(), byDimension };
    }
    // Per-event prices read their own subject's rows; a quantity goes through `reads`, which a close run batches.
    const measured = needsValues ? await usage.quantityAtCutoff(meter, q) : await reads.quantity(meter, q);
    const quantity = new Decimal(measured).plus(delta).toFixed();
    if (!needsValues) return { quantity };
    return { quantity, values: await usage.valuesAtCutoff(meter, q) };
  }

  async usageFor(snapshot: Snapshot, period: Period, cutoffMs: number, adjustments: Adjustment[], reads: BillingReads): Promise<Record<string, RateInput>> {
    const corrections = adjustments.filter((a) => a.kind === 'usage_correction' && ms(a.createdAt) <= cutoffMs);
    const usage: Record<string, RateInput> = {};
    for (const g of usageGroups(snapshot.subscription, snapshot.plans, period)) usage[g.id] = await this.measure(snapshot.customer.key, g, cutoffMs, corrections, reads);
    return usage;
  }

  /**
   * The invoice of `sub` for `period` as of `cutoffMs`: a draft (or what finalizing would
   * store). Includes pending adjustments, corrections of earlier finalized periods and credits.
   */
  async compute(sub: Subscription, period: Period, cutoffMs: number, reads: BillingReads, snapshot?: Snapshot): Promise<{ invoice: Invoice; snapshot: Snapshot; items: OneTimeItems }> {
    const { catalog } = this.deps;
    const snap: Snapshot = snapshot ?? catalog.snapshot(sub);
    const items = await this.oneTimeItems(sub, period, cutoffMs, reads);
    const { adjustments, oneTime, corrections, credits } = items;
    const usage = await this.usageFor(snap, period, cutoffMs, adjustments, reads);
    const end = subscriptionEnd(snap.subscription);
    const first = catalog.periodOf(snap.subscription, ms(snap.subscription.phases[0]!.start), snap.plans, snap.customer);
    const next = catalog.periodOf(snap.subscription, period.end, snap.plans, snap.customer);
    const invoice = buildInvoice({
      invoiceId: invoiceId(sub.id, period.start),
      customer: snap.customer,
      subscription: snap.subscription,
      plans: snap.plans,
      period,
      firstPeriod: first.start === period.start,
      ...(end > period.end ? { nextPeriod: next } : {}),
      usage,
      cutoffMs,
      rounding: this.deps.options.rounding,
      adjustments: oneTime,
      corrections,
      credits,
    });
    return { invoice, snapshot: snap, items };
  }

  /**
   * What an invoice of `sub`'s `period` carries besides fees and usage, at `cutoffMs`: one-time
   * adjustments not applied by an earlier invoice, corrections of earlier periods, prepaid credits.
   */
  private async oneTimeItems(sub: Subscription, period: Period, cutoffMs: number, reads: BillingReads): Promise<OneTimeItems> {
    const adjustments = await reads.adjustments(sub.customer);
    const prior = (await reads.finalized(sub.customer)).filter((s) => ms(s.invoice.periodStart) < period.start || s.subscriptionId !== sub.id);
    const priorSources = prior.flatMap((s) => s.invoice.lines.map((l) => ({ line: l, source: lineSource(l) })));
    const appliedIds = new Set(priorSources.flatMap(({ source }) => (source.kind === 'adjustment' ? [source.adjustmentId] : [])));
    const oneTime: OneTimeAdjustment[] = adjustments
      .filter((a) => (a.kind === 'credit' || a.kind === 'charge') && ms(a.createdAt) <= cutoffMs && !appliedIds.has(a.id))
      .map((a) => ({ id: a.id, description: `${a.kind === 'credit' ? 'Credit' : 'Charge'} (${a.reasonCode})${a.note ? `: ${a.note}` : ''}`, amount: a.kind === 'credit' ? new Decimal(a.amount).neg().toFixed() : a.amount }));
    const drawn = new Map<string, Decimal>();
    for (const { line, source } of priorSources) if (source.kind === 'credit') drawn.set(source.grantId, (drawn.get(source.grantId) ?? new Decimal(0)).minus(line.amount));
    const credits: CreditGrant[] = adjustments
      .filter((a) => a.kind === 'credit_grant')
      .map((a) => ({ id: a.id, amount: a.amount, drawn: (drawn.get(a.id) ?? new Decimal(0)).toFixed(), createdAtMs: ms(a.createdAt), ...(a.expiresAt ? { expiresAtMs: ms(a.expiresAt) } : {}) }));
    const corrections = await this.corrections(sub, prior.filter((s) => s.subscriptionId === sub.id), cutoffMs, adjustments, reads);
    return { adjustments, oneTime, corrections, credits };
  }

  /**
   * Correction lines for earlier finalized periods of `sub` that gained usage after they were
   * last billed: each period is priced again (with the plans as they were when it was
   * finalized) at the new cutoff and at the cutoff it was last billed at; the difference per
   * charge becomes a line.
   */
  private async corrections(sub: Subscription, prior: StoredInvoice[], cutoffMs: number, adjustments: Adjustment[], reads: BillingReads): Promise<CorrectionLine[]> {
    const out: CorrectionLine[] = [];
    const originals = prior.filter((s) => s.invoice.lines.some((l) => l.kind !== 'correction') || s.invoice.lines.length === 0).slice(-CORRECTION_LOOKBACK);
    for (const orig of originals) {
      const period = { start: ms(orig.invoice.periodStart), end: ms(orig.invoice.periodEnd) };
      const lastBilled = Math.max(
        ms(orig.invoice.cutoff),
        ...prior.filter((s) => s.invoice.lines.some((l) => l.kind === 'correction' && ms(l.periodStart) === period.start)).map((s) => ms(s.invoice.cutoff)),
      );
      if (lastBilled >= cutoffMs) continue;
      if (!(await this.changedSince(sub.customer, period, lastBilled, cutoffMs, adjustments, reads))) continue;
      const groups = usageGroups(orig.snapshot.subscription, orig.snapshot.plans, period);
      const [before, after] = await Promise.all([
        this.usageFor(orig.snapshot, period, lastBilled, adjustments, reads),
        this.usageFor(orig.snapshot, period, cutoffMs, adjustments, reads),
      ]);
      const build = (usage: Record<string, RateInput>) =>
        buildInvoice({ invoiceId: orig.invoice.id, customer: orig.snapshot.customer, subscription: orig.snapshot.subscription, plans: orig.snapshot.plans, period, firstPeriod: false, usage, cutoffMs, rounding: this.deps.options.rounding });
      const a = usageAmounts(build(before));
      const b = usageAmounts(build(after));
      for (const key of new Set([...a.keys(), ...b.keys()])) {
        const diff = (b.get(key) ?? new Decimal(0)).minus(a.get(key) ?? 0);
        if (diff.isZero()) continue;
        const g = groups.find((x) => x.id === key);
        const qd = g ? new Decimal(after[key]?.quantity ?? '0').minus(before[key]?.quantity ?? '0').toFixed() : '0';
        out.push({
          period,
          meter: g?.meter ?? '',
          chargeKey: key,
          quantityDelta: qd,
          amountDelta: diff.toFixed(),
          breakdown: [
            { description: `as billed (usage ingested by ${iso(lastBilled)})`, units: before[key]?.quantity ?? '0', amount: (a.get(key) ?? new Decimal(0)).neg().toFixed() },
            { description: `with late usage (ingested by ${iso(cutoffMs)})`, units: after[key]?.quantity ?? '0', amount: (b.get(key) ?? new Decimal(0)).toFixed() },
          ],
        });
      }
    }
    return out;
  }

  private async changedSince(customer: string, period: Period, fromMs: number, toMs: number, adjustments: Adjustment[], reads: BillingReads): Promise<boolean> {
    if (adjustments.some((a) => a.kind === 'usage_correction' && a.periodStart && ms(a.periodStart) >= period.start && ms(a.periodStart) < period.end && ms(a.createdAt) > fromMs && ms(a.createdAt) <= toMs)) return true;
    return reads.ingestedBetween(customer, period, fromMs, toMs);
  }
}
