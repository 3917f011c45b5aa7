import { Decimal } from '../common/decimal.ts';
import { silentLogger } from '../common/logger.ts';
import type { Meter } from '../meter/index.ts';
import type { CutoffQuery, SubjectCutoffQuery, TimeRange } from '../usage/index.ts';
import type { Adjustment, AdjustmentStore } from './adjustments.ts';
import { BillingCatalog, type Replica } from './billing-catalog.ts';
import type { Customer, Plan, Subscription } from './catalog.ts';
import { BillingClose, type CloseLease } from './close.ts';
import { directReads, InvoiceComputer, type BillingUsage } from './invoice-compute.ts';
import type { FinalizedFilter, InvoiceStore, StoredInvoice } from './invoice-store.ts';
import type { InvoiceNumbering } from './numbering.ts';
import { InvoicePreview } from './preview.ts';

/**
 * In-memory stand-ins for billing's stores, for unit tests of the close and the preview over
 * SUM/COUNT meters with per-unit style prices (quantities only; no per-event values). Rows carry
 * their ingestion time, so cutoffs are data. rater/close.test.ts has fuller ones with an effect log.
 */

const T = (s: string) => Date.parse(s);

export interface UsageRow {
  meterId: string;
  subject: string;
  timeMs: number;
  ingestedMs: number;
  value: string;
}

/** A mutable Map-backed replica: tests change the catalog as the API would. */
export class MapReplica<T> implements Replica<T> {
  readonly map: Map<string, T>;
  constructor(entries: Record<string, T>) {
    this.map = new Map(Object.entries(entries));
  }
  get(k: string): T | undefined {
    return this.map.get(k);
  }
  list(): T[] {
    return [...this.map.values()];
  }
}

export class MemoryUsage implements BillingUsage {
  readonly rows: UsageRow[] = [];

  private matches(meter: Meter, q: CutoffQuery, r: UsageRow): boolean {
    return r.meterId === meter.id && r.ingestedMs <= q.cutoffMs && q.ranges.some((x) => r.timeMs >= x.start && r.timeMs < x.end);
  }
  private sum(rows: UsageRow[]): string {
    return rows.reduce((a, r) => a.plus(r.value), new Decimal(0)).toFixed();
  }
  async quantityAtCutoff(meter: Meter, q: SubjectCutoffQuery): Promise<string> {
    return this.sum(this.rows.filter((r) => r.subject === q.subject && this.matches(meter, q, r)));
  }
  async quantitiesAtCutoff(meter: Meter, q: CutoffQuery): Promise<Map<string, string>> {
    const rows = this.rows.filter((r) => this.matches(meter, q, r));
    return new Map([...new Set(rows.map((r) => r.subject))].map((s) => [s, this.sum(rows.filter((r) => r.subject === s))]));
  }
  async subjectsIngestedBetween(period: TimeRange, fromMs: number, toMs: number): Promise<Set<string>> {
    return new Set(this.rows.filter((r) => r.timeMs >= period.start && r.timeMs < period.end && r.ingestedMs > fromMs && r.ingestedMs <= toMs).map((r) => r.subject));
  }
  async countIngestedBetween(subject: string, period: TimeRange, fromMs: number, toMs: number): Promise<number> {
    return this.rows.filter((r) => r.subject === subject && r.timeMs >= period.start && r.timeMs < period.end && r.ingestedMs > fromMs && r.ingestedMs <= toMs).length;
  }
  quantitiesByDimensionAtCutoff(): Promise<Map<string, string>> {
    throw new Error('not used by these tests');
  }
  valuesAtCutoff(): Promise<string[]> {
    throw new Error('not used by these tests');
  }
  dimensionValuesAtCutoff(): Promise<{ dimension: string; value: string }[]> {
    throw new Error('not used by these tests');
  }
}

/** Invoices kept as JSON text, as a table would: what is read back is a copy. */
export class MemoryInvoices implements InvoiceStore {
  readonly stored: string[] = [];
  private all(): StoredInvoice[] {
    return this.stored.map((s) => JSON.parse(s) as StoredInvoice).sort((a, b) => T(a.invoice.periodStart) - T(b.invoice.periodStart) || a.invoice.id.localeCompare(b.invoice.id));
  }
  async insert(items: StoredInvoice[]): Promise<void> {
    for (const i of items) this.stored.push(JSON.stringify(i));
  }
  async finalized(f: FinalizedFilter = {}): Promise<StoredInvoice[]> {
    return this.all().filter((s) => (f.customer === undefined || s.invoice.customer === f.customer) && (f.id === undefined || s.invoice.id === f.id) && (f.subscriptionId === undefined || s.subscriptionId === f.subscriptionId));
  }
  async finalizedStarts(): Promise<Map<string, Set<number>>> {
    const out = new Map<string, Set<number>>();
    for (const s of this.all()) (out.get(s.subscriptionId) ?? out.set(s.subscriptionId, new Set()).get(s.subscriptionId)!).add(T(s.invoice.periodStart));
    return out;
  }
  aggregates(): Promise<never> {
    throw new Error('not used by these tests');
  }
}

export class MemoryAdjustments implements AdjustmentStore {
  readonly rows: Adjustment[] = [];
  async list(customer?: string): Promise<Adjustment[]> {
    return this.rows.filter((a) => customer === undefined || a.customer === customer);
  }
  async add(a: Omit<Adjustment, 'id' | 'createdAt'>): Promise<Adjustment> {
    const adj = { ...a, id: `adj_${this.rows.length + 1}`, createdAt: new Date().toISOString() };
    this.rows.push(adj);
    return adj;
  }
}

class Counter implements InvoiceNumbering {
  private last = 0;
  async allocate(year: number, count: number): Promise<string[]> {
    return Array.from({ length: count }, () => `T-${year}-${++this.last}`);
  }
}

const oneLease: CloseLease = { withLease: async (_name, fn) => ({ ran: true, value: await fn() }) };

/** A close, a preview and their stores over the given catalog. */
export function memoryBilling(catalog: { meters: Record<string, Meter>; customers: Record<string, Customer>; plans: Record<string, Plan>; subscriptions: Record<string, Subscription> }, graceMs: number) {
  const replicas = { meters: new MapReplica(catalog.meters), customers: new MapReplica(catalog.customers), plans: new MapReplica(catalog.plans), subscriptions: new MapReplica(catalog.subscriptions) };
  const billingCatalog = new BillingCatalog(replicas);
  const usage = new MemoryUsage();
  const invoices = new MemoryInvoices();
  const adjustments = new MemoryAdjustments();
  const options = { graceMs, rounding: 'half_up' as const, numberPrefix: 'T', safetyMs: 0 };
  const computer = new InvoiceComputer({ usage, catalog: billingCatalog, options });
  const close = new BillingClose({ computer, catalog: billingCatalog, usage, invoices, adjustments, numbering: new Counter(), leases: oneLease, logger: silentLogger(), options });
  const preview = new InvoicePreview({ catalog: billingCatalog, usage, reads: directReads({ invoices, adjustments, usage }), options });
  return { replicas, usage, invoices, adjustments, close, preview };
}
