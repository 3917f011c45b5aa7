import type { KV } from '@nats-io/kv';
import type { Store } from '../common/clickhouse.ts';
import type { Logger } from '../common/logger.ts';
import type { Meter } from '../meter/index.ts';
import type { UsageStore } from '../usage/index.ts';
import { ClickHouseAdjustments, type Adjustment, type AdjustmentStore } from './adjustments.ts';
import { fileByLocalMonth, monthReadRange } from './aggregates.ts';
import { BillingCatalog, type Replica } from './billing-catalog.ts';
import type { Customer, Plan, Subscription } from './catalog.ts';
import { BillingClose, type CloseLease } from './close.ts';
import { directReads, InvoiceComputer, type BillingOptions, type BillingReads, type OneTimeItems } from './invoice-compute.ts';
import { ClickHouseInvoiceStore, type AggregateRow, type FinalizedFilter, type InvoiceStore, type Snapshot, type StoredInvoice } from './invoice-store.ts';
import type { Invoice } from './invoice-types.ts';
import { KvInvoiceNumbering } from './numbering.ts';
import type { Period } from './periods.ts';
import type { InvoicePreviews, PreviewDraft } from './contracts.ts';
import { InvoicePreview } from './preview.ts';
import { InvoiceProjection } from './projection.ts';
import type { InvoiceInZone } from './revenue.ts';

export interface BillingDeps {
  /** ClickHouse, for the rater's own tables (invoices, invoice lines, adjustments). */
  store: Store;
  /** Every read of usage (meter_values at a cutoff). */
  usage: UsageStore;
  meters: Replica<Meter>;
  customers: Replica<Customer>;
  plans: Replica<Plan>;
  subscriptions: Replica<Subscription>;
  /** The catalog bucket, for the invoice number counter. */
  kv: KV;
  leases: CloseLease;
  logger: Logger;
  options: BillingOptions;
}

/**
 * Billing close and everything around it, on top of the pure invoice builder; one object for
 * api/, anomaly/ and cli/, made of the parts that do the work:
 * - `close.ts`: the close run (under the lease) and its CloseContext;
 * - `projection.ts`: drafts and the projected invoice of the current period;
 * - `invoice-compute.ts`: an invoice of a period at a cutoff, with corrections of earlier periods;
 * - `invoice-store.ts`, `adjustments.ts`, `numbering.ts`: the rater's tables and the invoice counter.
 *
 * Usage is read with `ingested_at <= cutoff`, so a period's invoice is reproducible: its cutoff
 * is the period end plus the grace period, and closing it again gives the same lines. Events
 * ingested after a period was finalized are priced on the next invoice as corrections (the
 * period priced with them, less the period as last billed).
 */
export class Billing {
  private readonly catalog: BillingCatalog;
  private readonly invoices: InvoiceStore;
  private readonly adjustmentStore: AdjustmentStore;
  private readonly computer: InvoiceComputer;
  private readonly close: BillingClose;
  private readonly projection: InvoiceProjection;
  private readonly previews: InvoicePreview;
  /** What API requests read through: never a close run's context (that is an argument of the close's calls only). */
  private readonly direct: BillingReads;
  private readonly customers: Replica<Customer>;

  constructor(deps: BillingDeps) {
    this.customers = deps.customers;
    this.catalog = new BillingCatalog(deps);
    this.invoices = new ClickHouseInvoiceStore(deps.store);
    this.adjustmentStore = new ClickHouseAdjustments(deps.store);
    this.computer = new InvoiceComputer({ usage: deps.usage, catalog: this.catalog, options: deps.options });
    this.direct = directReads({ invoices: this.invoices, adjustments: this.adjustmentStore, usage: deps.usage });
    this.close = new BillingClose({
      computer: this.computer,
      catalog: this.catalog,
      usage: deps.usage,
      invoices: this.invoices,
      adjustments: this.adjustmentStore,
      numbering: new KvInvoiceNumbering(deps.kv, deps.options.numberPrefix),
      leases: deps.leases,
      logger: deps.logger,
      options: deps.options,
    });
    this.projection = new InvoiceProjection({ computer: this.computer, catalog: this.catalog, invoices: this.invoices, reads: this.direct, options: deps.options });
    this.previews = new InvoicePreview({ catalog: this.catalog, usage: deps.usage, reads: this.direct, options: deps.options });
  }

  /** The current period's invoice (usage up to `nowMs`) before and after a draft change; nothing is stored. See `InvoicePreview`. */
  preview(draft: PreviewDraft, nowMs: number): Promise<InvoicePreviews> {
    return this.previews.preview(draft, nowMs);
  }

  /**
   * Quantities and amounts of the finalized invoices whose period starts in `month` (YYYY-MM) in
   * the customer's own time zone, per customer, currency, meter and line kind.
   */
  async aggregates(month: string): Promise<AggregateRow[]> {
    const { fromMs, toMs } = monthReadRange(month);
    const rows = await this.invoices.aggregates(fromMs, toMs);
    return fileByLocalMonth(rows, month, (key) => this.customers.get(key)?.timeZone ?? 'UTC');
  }

  /**
   * Every finalized invoice that can be billed in `month` (YYYY-MM) or before, whatever the time
   * zone, with its customer's zone (as `aggregates` files them): what revenue recognition and the
   * journal (rater/revenue.ts, rater/journal.ts) read; they file each by its local month.
   */
  async invoicesThrough(month: string): Promise<InvoiceInZone[]> {
    const stored = await this.invoices.finalized({ periodToMs: monthReadRange(month).toMs });
    return stored.map(({ invoice }) => ({ invoice, timeZone: this.customers.get(invoice.customer)?.timeZone ?? 'UTC' }));
  }

  /** The billing period of `sub` containing `atMs`. */
  periodOf(sub: Subscription, atMs: number, plans?: Record<string, Plan>, customer?: Customer): Period {
    return this.catalog.periodOf(sub, atMs, plans, customer);
  }

  /** The current period of the customer's active subscription, if any. */
  periodForCustomer(customer: string, nowMs: number): Period | undefined {
    return this.catalog.periodForCustomer(customer, nowMs);
  }

  customer(key: string): Customer {
    return this.catalog.customer(key);
  }

  finalized(filter: FinalizedFilter = {}): Promise<StoredInvoice[]> {
    return this.invoices.finalized(filter);
  }

  adjustments(customer: string): Promise<Adjustment[]> {
    return this.adjustmentStore.list(customer);
  }

  addAdjustment(a: Omit<Adjustment, 'id' | 'createdAt'>): Promise<Adjustment> {
    return this.adjustmentStore.add(a);
  }

  /**
   * The invoice of `sub` for `period` as of `cutoffMs`: a draft (or what finalizing would
   * store). Includes pending adjustments, corrections of earlier finalized periods and credits.
   */
  compute(sub: Subscription, period: Period, cutoffMs: number, snapshot?: Snapshot): Promise<{ invoice: Invoice; snapshot: Snapshot; items: OneTimeItems }> {
    return this.computer.compute(sub, period, cutoffMs, this.direct, snapshot);
  }

  /** Periods of `sub` that have ended and are not finalized, oldest first, up to `nowMs`. */
  async duePeriods(sub: Subscription, nowMs: number, finalizedStarts: Set<number>): Promise<Period[]> {
    return this.close.duePeriods(sub, nowMs, finalizedStarts);
  }

  /** Finalizes `sub`'s invoice for `period` (see `BillingClose.finalize`); must run under the close lease. */
  finalize(sub: Subscription, period: Period, nowMs: number): Promise<{ invoice: Invoice; created: boolean }> {
    return this.close.finalize(sub, period, nowMs);
  }

  /** Finalizes every due period of every subscription, oldest first, under the close lease. */
  runDue(nowMs: number): Promise<{ ran: boolean; finalized: Invoice[] }> {
    return this.close.runDue(nowMs);
  }

  /** A close run by hand for calendar month `month` (YYYY-MM): see `BillingClose.closeByHand`. */
  closeByHand(month: string, opts: { customer?: string; dryRun: boolean; nowMs: number }): Promise<{ invoices: Invoice[]; skipped: { subscription: string; reason: string }[] }> {
    return this.close.closeByHand(month, opts);
  }

  /** Draft invoices: periods that ended but are not finalized yet (in their grace period), computed now. */
  drafts(nowMs: number, customer?: string): Promise<Invoice[]> {
    return this.projection.drafts(nowMs, customer);
  }

  /** The projected invoice of a customer's current period: see `InvoiceProjection.projected`. */
  projected(customerKey: string, nowMs: number): Promise<{ period: Period; soFar: Invoice; projected: Invoice; elapsedShare: string }[]> {
    return this.projection.projected(customerKey, nowMs);
  }
}
