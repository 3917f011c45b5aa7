import { AppError } from '../common/errors.ts';
import type { Leases } from '../common/lease.ts';
import type { Logger } from '../common/logger.ts';
import type { Meter } from '../meter/index.ts';
import { tzOffsetMinutes, type SubjectCutoffQuery } from '../usage/index.ts';
import type { Adjustment, AdjustmentStore } from './adjustments.ts';
import { subscriptionEnd, type BillingCatalog } from './billing-catalog.ts';
import type { Subscription } from './catalog.ts';
import { CLOSE_SAFETY_MS, directReads, invoiceId, type BillingOptions, type BillingReads, type BillingUsage, type InvoiceComputer } from './invoice-compute.ts';
import type { InvoiceStore, StoredInvoice } from './invoice-store.ts';
import type { Invoice } from './invoice-types.ts';
import type { InvoiceNumbering } from './numbering.ts';
import type { Period } from './periods.ts';

/** Invoices inserted (and numbered) together during a close run. */
const STORE_BLOCK = 500;

const iso = (ms: number) => new Date(ms).toISOString();
const ms = (s: string) => Date.parse(s);

/** The job lease a close runs under (Leases satisfies it). */
export type CloseLease = Pick<Leases, 'withLease'>;

function groupByCustomer<V>(rows: V[], customerOf: (v: V) => string): Map<string, V[]> {
  const m = new Map<string, V[]>();
  for (const r of rows) {
    const k = customerOf(r);
    (m.get(k) ?? m.set(k, []).get(k)!).push(r);
  }
  return m;
}

/**
 * State preloaded for a close run over many subscriptions, so the run costs one query per
 * table rather than several per subscription: finalized invoices and adjustments by customer,
 * usage per (meter, ranges, cutoff) for every customer at once, and the invoices finalized in
 * this run, inserted and numbered in blocks.
 *
 * A close run creates its own and hands it down as an argument; nothing keeps it on an
 * instance, so API requests served meanwhile (drafts, projections, adjustments) never see it:
 * they read through `directReads`.
 */
export class CloseContext implements BillingReads {
  private readonly usageBy = new Map<string, Promise<Map<string, string>>>();
  /** Customers with rows in a period ingested in (from, to], per (period, from, to): see `ingestedBetween`. */
  private readonly changed = new Map<string, Promise<Set<string>>>();
  /** Finalized in this run, not stored yet (see `BillingClose.flush`). */
  readonly pending: StoredInvoice[] = [];

  private constructor(
    private readonly usage: BillingUsage,
    private readonly finalizedBy: Map<string, StoredInvoice[]>,
    private readonly adjustmentsBy: Map<string, Adjustment[]>,
  ) {}

  static async open(d: { invoices: InvoiceStore; adjustments: AdjustmentStore; usage: BillingUsage }): Promise<CloseContext> {
    const finalized = groupByCustomer(await d.invoices.finalized(), (s) => s.invoice.customer);
    const adjustments = groupByCustomer(await d.adjustments.list(), (a) => a.customer);
    return new CloseContext(d.usage, finalized, adjustments);
  }

  async finalized(customer: string): Promise<StoredInvoice[]> {
    return this.finalizedBy.get(customer) ?? [];
  }

  async adjustments(customer: string): Promise<Adjustment[]> {
    return this.adjustmentsBy.get(customer) ?? [];
  }

  async quantity(meter: Meter, q: SubjectCutoffQuery): Promise<string> {
    // One query for every customer of this meter, ranges and cutoff; later subscriptions read it.
    const key = `${meter.id}|${JSON.stringify(q.ranges)}|${q.cutoffMs}`;
    let all = this.usageBy.get(key);
    if (!all) {
      all = this.usage.quantitiesAtCutoff(meter, { ranges: q.ranges, cutoffMs: q.cutoffMs });
      this.usageBy.set(key, all);
    }
    return (await all).get(q.subject) ?? '0';
  }

  async ingestedBetween(customer: string, period: Period, fromMs: number, toMs: number): Promise<boolean> {
    // One query for every customer of this period and interval; later subscriptions read it.
    // (A query per subscription cost a few ms each: most of a close with many earlier invoices.)
    const key = `${period.start}|${period.end}|${fromMs}|${toMs}`;
    let changed = this.changed.get(key);
    if (!changed) {
      changed = this.usage.subjectsIngestedBetween(period, fromMs, toMs);
      this.changed.set(key, changed);
    }
    return (await changed).has(customer);
  }

  /** An invoice finalized in this run: pending until flushed, and visible to the rest of the run now. */
  addFinalized(s: StoredInvoice): void {
    this.pending.push(s);
    const list = this.finalizedBy.get(s.invoice.customer) ?? this.finalizedBy.set(s.invoice.customer, []).get(s.invoice.customer)!;
    list.push(s);
  }
}

export interface BillingCloseDeps {
  computer: InvoiceComputer;
  catalog: BillingCatalog;
  usage: BillingUsage;
  invoices: InvoiceStore;
  adjustments: AdjustmentStore;
  numbering: InvoiceNumbering;
  leases: CloseLease;
  logger: Logger;
  options: BillingOptions;
}

/**
 * Billing close: finalizes periods under the close lease. A period's invoice is computed at
 * cutoff = period end + grace, so closing it again gives the same lines; events ingested after
 * it was finalized are priced on the next invoice as corrections.
 */
export class BillingClose {
  /** Reads outside a close run (a `finalize` called on its own). */
  private readonly direct: BillingReads;

  constructor(private readonly deps: BillingCloseDeps) {
    this.direct = directReads(deps);
  }

  private get safetyMs(): number {
    return this.deps.options.safetyMs ?? CLOSE_SAFETY_MS;
  }

  /** Runs `fn` with a new close context (see CloseContext); pending invoices are stored before it returns. */
  private async withContext<T>(fn: (ctx: CloseContext) => Promise<T>): Promise<T> {
    const ctx = await CloseContext.open(this.deps);
    const value = await fn(ctx);
    await this.flush(ctx);
    return value;
  }

  /** Periods of `sub` that have ended and are not finalized, oldest first, up to `nowMs`. */
  duePeriods(sub: Subscription, nowMs: number, finalizedStarts: Set<number>): Period[] {
    const { catalog } = this.deps;
    const plans = catalog.planSubset(sub);
    const customer = catalog.customer(sub.customer);
    const out: Period[] = [];
    let p = catalog.periodOf(sub, ms(sub.phases[0]!.start), plans, customer);
    const end = subscriptionEnd(sub);
    while (p.end + this.deps.options.graceMs + this.safetyMs <= nowMs && p.start < end) {
      if (!finalizedStarts.has(p.start)) out.push(p);
      p = catalog.periodOf(sub, p.end, plans, customer);
    }
    return out;
  }

  /**
   * Finalizes `sub`'s invoice for `period`: computes it at cutoff = period end + grace, numbers
   * it and stores it. Idempotent: a finalized invoice is returned as stored. Must run under the
   * close lease (see `runDue` and `closeByHand`). Within a close run (`ctx`), it is numbered and
   * stored with its block (see `flush`); without one, right away.
   */
  async finalize(sub: Subscription, period: Period, nowMs: number, ctx?: CloseContext): Promise<{ invoice: Invoice; created: boolean }> {
    const reads = ctx ?? this.direct;
    const id = invoiceId(sub.id, period.start);
    const existing = (await reads.finalized(sub.customer)).find((s) => s.invoice.id === id);
    if (existing) return { invoice: existing.invoice, created: false };
    const cutoffMs = period.end + this.deps.options.graceMs;
    if (cutoffMs + this.safetyMs > nowMs) {
      throw new AppError('REQUEST_INVALID', `the period ${iso(period.start)} – ${iso(period.end)} can be finalized after ${iso(cutoffMs + this.safetyMs)} (period end + grace); use dryRun to preview it now`);
    }
    const { invoice, snapshot } = await this.deps.computer.compute(sub, period, cutoffMs, reads);
    if (ctx) {
      // Numbered and stored with its block (see flush); visible to the rest of this run now.
      const final: Invoice = { ...invoice, status: 'finalized', issuedAt: iso(nowMs) };
      ctx.addFinalized({ invoice: final, snapshot, subscriptionId: sub.id });
      if (ctx.pending.length >= STORE_BLOCK) await this.flush(ctx);
      return { invoice: final, created: true };
    }
    const [number] = await this.deps.numbering.allocate(new Date(period.end).getUTCFullYear(), 1);
    const final: Invoice = { ...invoice, status: 'finalized', number, issuedAt: iso(nowMs) };
    await this.deps.invoices.insert([{ invoice: final, snapshot, subscriptionId: sub.id }]);
    this.deps.logger.info({ invoice: final.id, number: final.number, customer: final.customer, total: final.total, currency: final.currency }, 'invoice finalized');
    return { invoice: final, created: true };
  }

  /** Numbers and stores the invoices pending in the close context. */
  private async flush(ctx: CloseContext): Promise<void> {
    const pending = ctx.pending.splice(0);
    if (pending.length === 0) return;
    // The year in a number is the period end's; numbers are allocated per year group, in order.
    for (const year of [...new Set(pending.map((p) => new Date(p.invoice.periodEnd).getUTCFullYear()))]) {
      const items = pending.filter((p) => new Date(p.invoice.periodEnd).getUTCFullYear() === year);
      const numbers = await this.deps.numbering.allocate(year, items.length);
      items.forEach((p, i) => (p.invoice.number = numbers[i]));
    }
    await this.deps.invoices.insert(pending);
    for (const p of pending) this.deps.logger.info({ invoice: p.invoice.id, number: p.invoice.number, customer: p.invoice.customer, total: p.invoice.total, currency: p.invoice.currency }, 'invoice finalized');
  }

  /** Finalizes every due period of every subscription, oldest first, under the close lease. */
  async runDue(nowMs: number): Promise<{ ran: boolean; finalized: Invoice[] }> {
    const r = await this.deps.leases.withLease(
      'billing-close',
      () =>
        this.withContext(async (ctx) => {
          const done: Invoice[] = [];
          const starts = await this.deps.invoices.finalizedStarts();
          for (const sub of this.deps.catalog.subscriptions()) {
            for (const p of this.duePeriods(sub, nowMs, starts.get(sub.id) ?? new Set())) {
              const { invoice, created } = await this.finalize(sub, p, nowMs, ctx);
              if (created) done.push(invoice);
            }
          }
          return done;
        }),
      this.deps.logger,
    );
    return r.ran ? { ran: true, finalized: r.value } : { ran: false, finalized: [] };
  }

  /**
   * A close run by hand: for each subscription (or one customer's), the period that starts in
   * calendar month `month` (YYYY-MM, in the customer's zone). `dryRun` computes the invoices
   * as finalizing would (at the same cutoff) without storing anything.
   */
  async closeByHand(month: string, opts: { customer?: string; dryRun: boolean; nowMs: number }): Promise<{ invoices: Invoice[]; skipped: { subscription: string; reason: string }[] }> {
    const { catalog, computer } = this.deps;
    const m = /^(\d{4})-(0[1-9]|1[0-2])$/.exec(month);
    if (!m) throw new AppError('REQUEST_INVALID', 'period must be a month YYYY-MM, e.g. 2026-10 (month 01-12)');
    const subs = catalog.subscriptions().filter((s) => !opts.customer || s.customer === opts.customer);
    if (opts.customer && subs.length === 0) throw new AppError('NOT_FOUND', `customer "${opts.customer}" has no subscription`);
    const work = async (ctx: CloseContext) => {
      const invoices: Invoice[] = [];
      const skipped: { subscription: string; reason: string }[] = [];
      for (const sub of subs) {
        const customer = catalog.customer(sub.customer);
        const plans = catalog.planSubset(sub);
        const monthStartLocal = Date.UTC(Number(m[1]), Number(m[2]) - 1, 1);
        let p = catalog.periodOf(sub, monthStartLocal - 14 * 86_400_000, plans, customer);
        const inMonth = (x: Period) => {
          const lp = new Date(x.start + tzOffsetMinutes(customer.timeZone, x.start) * 60_000);
          return lp.getUTCFullYear() === Number(m[1]) && lp.getUTCMonth() === Number(m[2]) - 1;
        };
        while (!inMonth(p) && p.start < monthStartLocal + 45 * 86_400_000) p = catalog.periodOf(sub, p.end, plans, customer);
        if (!inMonth(p)) {
          skipped.push({ subscription: sub.id, reason: `no billing period starts in ${month}` });
          continue;
        }
        if (p.end <= ms(sub.phases[0]!.start) || p.start >= subscriptionEnd(sub)) {
          skipped.push({ subscription: sub.id, reason: `not active in the period starting ${iso(p.start)}` });
          continue;
        }
        if (opts.dryRun) {
          const id = invoiceId(sub.id, p.start);
          const existing = (await ctx.finalized(sub.customer)).find((s) => s.invoice.id === id);
          if (existing) {
            // The preview of a finalized period is computed again from its snapshot, at its cutoff.
            const again = await computer.compute(sub, p, ms(existing.invoice.cutoff), ctx, existing.snapshot);
            invoices.push({ ...again.invoice, status: 'draft' });
          } else invoices.push((await computer.compute(sub, p, Math.min(opts.nowMs, p.end + this.deps.options.graceMs), ctx)).invoice);
          continue;
        }
        try {
          invoices.push((await this.finalize(sub, p, opts.nowMs, ctx)).invoice);
        } catch (err) {
          if (err instanceof AppError && err.code === 'REQUEST_INVALID') skipped.push({ subscription: sub.id, reason: err.message });
          else throw err;
        }
      }
      return { invoices, skipped };
    };
    if (opts.dryRun) return this.withContext(work);
    const r = await this.deps.leases.withLease('billing-close', () => this.withContext(work), this.deps.logger);
    if (!r.ran) throw new AppError('CATALOG_CONFLICT', 'another billing close is running; retry in a minute');
    return r.value;
  }
}
