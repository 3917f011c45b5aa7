import { describe, expect, it } from 'vitest';
import { Decimal } from '../common/decimal.ts';
import { silentLogger } from '../common/logger.ts';
import { MeterInputSchema, type Meter } from '../meter/index.ts';
import type { CutoffQuery, SubjectCutoffQuery, TimeRange } from '../usage/index.ts';
import type { Adjustment, AdjustmentStore } from './adjustments.ts';
import { BillingCatalog, type Replica } from './billing-catalog.ts';
import type { Customer, Plan, Subscription } from './catalog.ts';
import { BillingClose, type CloseLease } from './close.ts';
import { directReads, InvoiceComputer, type BillingUsage } from './invoice-compute.ts';
import type { PeriodAggregateRow } from './aggregates.ts';
import type { FinalizedFilter, InvoiceStore, StoredInvoice } from './invoice-store.ts';
import type { InvoiceNumbering } from './numbering.ts';
import { InvoiceProjection } from './projection.ts';

/**
 * The close with in-memory stores: what it reads and writes, in which order, at which cutoff.
 * Every fake appends to one effect log; rows carry their ingestion time, so cutoffs are data
 * (no clock, no sleeps).
 */

const T = (s: string) => Date.parse(s);
const DAY = 86_400_000;
const GRACE = DAY;
const SEP = T('2026-09-01T00:00:00Z');
const OCT = T('2026-10-01T00:00:00Z');
const NOV = T('2026-11-01T00:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();

interface Row {
  meterId: string;
  subject: string;
  timeMs: number;
  ingestedMs: number;
  value: string;
}

function replica<T>(entries: Record<string, T>): Replica<T> {
  const m = new Map(Object.entries(entries));
  return { get: (k) => m.get(k), list: () => [...m.values()] };
}

class FakeUsage implements BillingUsage {
  readonly rows: Row[] = [];
  constructor(private readonly effects: string[]) {}

  private inCutoff(meter: Meter, q: CutoffQuery, r: Row): boolean {
    return r.meterId === meter.id && r.ingestedMs <= q.cutoffMs && q.ranges.some((x) => r.timeMs >= x.start && r.timeMs < x.end);
  }

  private sum(rows: Row[]): string {
    return rows.reduce((a, r) => a.plus(r.value), new Decimal(0)).toFixed();
  }

  async quantityAtCutoff(meter: Meter, q: SubjectCutoffQuery): Promise<string> {
    this.effects.push(`usage.quantityAtCutoff ${q.subject} ${iso(q.cutoffMs)}`);
    return this.sum(this.rows.filter((r) => r.subject === q.subject && this.inCutoff(meter, q, r)));
  }

  async quantitiesAtCutoff(meter: Meter, q: CutoffQuery): Promise<Map<string, string>> {
    this.effects.push(`usage.quantitiesAtCutoff ${iso(q.cutoffMs)}`);
    const rows = this.rows.filter((r) => this.inCutoff(meter, q, r));
    return new Map([...new Set(rows.map((r) => r.subject))].map((s) => [s, this.sum(rows.filter((r) => r.subject === s))]));
  }

  async subjectsIngestedBetween(period: TimeRange, fromMs: number, toMs: number): Promise<Set<string>> {
    this.effects.push(`usage.subjectsIngestedBetween ${iso(fromMs)} ${iso(toMs)}`);
    return new Set(this.rows.filter((r) => r.timeMs >= period.start && r.timeMs < period.end && r.ingestedMs > fromMs && r.ingestedMs <= toMs).map((r) => r.subject));
  }

  async countIngestedBetween(subject: string, period: TimeRange, fromMs: number, toMs: number): Promise<number> {
    this.effects.push(`usage.countIngestedBetween ${subject}`);
    return this.rows.filter((r) => r.subject === subject && r.timeMs >= period.start && r.timeMs < period.end && r.ingestedMs > fromMs && r.ingestedMs <= toMs).length;
  }

  // Per-event and dimensional prices are not used by these plans.
  quantitiesByDimensionAtCutoff(): Promise<Map<string, string>> {
    throw new Error('not used');
  }
  valuesAtCutoff(): Promise<string[]> {
    throw new Error('not used');
  }
  dimensionValuesAtCutoff(): Promise<{ dimension: string; value: string }[]> {
    throw new Error('not used');
  }
}

/** Invoices kept as JSON, as a table would: what is read back is a copy of what was stored. */
class FakeInvoices implements InvoiceStore {
  private readonly stored: string[] = [];
  inserts = 0;
  constructor(private readonly effects: string[]) {}

  private all(): StoredInvoice[] {
    return this.stored.map((s) => JSON.parse(s) as StoredInvoice).sort((a, b) => T(a.invoice.periodStart) - T(b.invoice.periodStart) || a.invoice.id.localeCompare(b.invoice.id));
  }

  async insert(items: StoredInvoice[]): Promise<void> {
    this.inserts++;
    this.effects.push(`invoices.insert ${items.map((i) => `${i.invoice.customer}:${i.invoice.number}:${i.invoice.status}`).join(',')}`);
    for (const i of items) this.stored.push(JSON.stringify(i));
  }

  async finalized(f: FinalizedFilter = {}): Promise<StoredInvoice[]> {
    this.effects.push('invoices.finalized');
    return this.all().filter((s) => (f.customer === undefined || s.invoice.customer === f.customer) && (f.id === undefined || s.invoice.id === f.id) && (f.subscriptionId === undefined || s.subscriptionId === f.subscriptionId));
  }

  async finalizedStarts(): Promise<Map<string, Set<number>>> {
    this.effects.push('invoices.finalizedStarts');
    const out = new Map<string, Set<number>>();
    for (const s of this.all()) (out.get(s.subscriptionId) ?? out.set(s.subscriptionId, new Set()).get(s.subscriptionId)!).add(T(s.invoice.periodStart));
    return out;
  }

  aggregates(): Promise<PeriodAggregateRow[]> {
    throw new Error('not used');
  }
}

class FakeAdjustments implements AdjustmentStore {
  readonly rows: Adjustment[] = [];
  constructor(private readonly effects: string[]) {}

  async list(customer?: string): Promise<Adjustment[]> {
    this.effects.push('adjustments.list');
    return this.rows.filter((a) => customer === undefined || a.customer === customer);
  }

  async add(a: Omit<Adjustment, 'id' | 'createdAt'>, createdAtMs = Date.now()): Promise<Adjustment> {
    const adj = { ...a, id: `adj_${this.rows.length + 1}`, createdAt: iso(createdAtMs) };
    this.rows.push(adj);
    return adj;
  }
}

class FakeNumbering implements InvoiceNumbering {
  private last = 0;
  /** Runs inside `allocate`: between an invoice's computation and its storage. */
  onAllocate: (() => Promise<void>) | undefined;
  constructor(private readonly effects: string[]) {}

  async allocate(year: number, count: number): Promise<string[]> {
    this.effects.push(`numbering.allocate ${year} ${count}`);
    await this.onAllocate?.();
    return Array.from({ length: count }, () => `T-${year}-${++this.last}`);
  }
}

class FakeLeases implements CloseLease {
  held = false;
  constructor(private readonly effects: string[]) {}

  async withLease<T>(name: string, fn: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }> {
    if (this.held) return { ran: false };
    this.effects.push(`lease ${name}`);
    this.held = true;
    try {
      return { ran: true, value: await fn() };
    } finally {
      this.held = false;
    }
  }
}

const calls: Meter = { ...MeterInputSchema.parse({ slug: 'calls', eventType: 'api.call', aggregation: 'SUM', valueProperty: '$.n' }), id: 'm_calls', createdAt: '2026-01-01T00:00:00Z' };
const customer = (key: string): Customer => ({ key, name: key, currency: 'USD', timeZone: 'UTC', createdAt: '2026-01-01T00:00:00Z' });
const plan: Plan = {
  key: 'basic',
  name: 'Basic',
  currency: 'USD',
  interval: 'month',
  baseFee: { amount: '10', timing: 'arrears' },
  charges: [{ key: 'calls', meter: 'calls', price: { model: 'per_unit', unitPrice: '0.10' } }],
  createdAt: '2026-01-01T00:00:00Z',
};
const subscription = (c: string): Subscription => ({ id: `sub_${c}`, customer: c, anchor: iso(SEP), phases: [{ plan: 'basic', start: iso(SEP) }], createdAt: '2026-01-01T00:00:00Z' });

function setup() {
  const effects: string[] = [];
  const usage = new FakeUsage(effects);
  const invoices = new FakeInvoices(effects);
  const adjustments = new FakeAdjustments(effects);
  const numbering = new FakeNumbering(effects);
  const leases = new FakeLeases(effects);
  const catalog = new BillingCatalog({
    meters: replica({ calls }),
    customers: replica({ acme: customer('acme'), globex: customer('globex') }),
    plans: replica({ basic: plan }),
    subscriptions: replica({ sub_acme: subscription('acme'), sub_globex: subscription('globex') }),
  });
  const options = { graceMs: GRACE, rounding: 'half_up' as const, numberPrefix: 'T', safetyMs: 0 };
  const computer = new InvoiceComputer({ usage, catalog, options });
  const close = new BillingClose({ computer, catalog, usage, invoices, adjustments, numbering, leases, logger: silentLogger(), options });
  const projection = new InvoiceProjection({ computer, catalog, invoices, reads: directReads({ invoices, adjustments, usage }), options });
  const ingest = (subject: string, time: string, ingestedMs: number, value = '1') => usage.rows.push({ meterId: calls.id, subject, timeMs: T(time), ingestedMs, value });
  return { effects, usage, invoices, adjustments, numbering, leases, close, projection, ingest };
}

const usageLine = (inv: { lines: { kind: string; quantity: string }[] }) => inv.lines.find((l) => l.kind === 'usage')?.quantity;

describe('billing close (in-memory stores)', () => {
  it('reads usage at period end + grace, then numbers the invoices, then stores them finalized', async () => {
    const s = setup();
    s.ingest('acme', '2026-09-10T00:00:00Z', SEP + 10 * DAY, '3');
    s.ingest('acme', '2026-09-30T23:00:00Z', OCT + 12 * 3_600_000); // in the grace period: counted
    s.ingest('acme', '2026-09-30T23:30:00Z', OCT + GRACE + 1); // after the cutoff: not on this invoice
    s.ingest('globex', '2026-09-20T00:00:00Z', SEP + 20 * DAY, '7');

    const r = await s.close.runDue(OCT + GRACE + 1000);

    expect(r.ran).toBe(true);
    expect(r.finalized.map((i) => [i.customer, usageLine(i), i.cutoff, i.status])).toEqual([
      ['acme', '4', iso(OCT + GRACE), 'finalized'],
      ['globex', '7', iso(OCT + GRACE), 'finalized'],
    ]);
    expect(s.effects).toEqual([
      'lease billing-close',
      // The close context: every finalized invoice and adjustment, once.
      'invoices.finalized',
      'adjustments.list',
      'invoices.finalizedStarts',
      // One usage read for every customer of the meter, at the cutoff.
      `usage.quantitiesAtCutoff ${iso(OCT + GRACE)}`,
      'numbering.allocate 2026 2',
      'invoices.insert acme:T-2026-1:finalized,globex:T-2026-2:finalized',
    ]);
    const [stored] = await s.invoices.finalized({ customer: 'acme' });
    expect(stored!.invoice).toEqual(r.finalized[0]);
  });

  it('a second close finds the period finalized: the same invoice, nothing stored or numbered', async () => {
    const s = setup();
    s.ingest('acme', '2026-09-10T00:00:00Z', SEP + 10 * DAY, '3');
    const now = OCT + GRACE + 1000;
    const first = await s.close.runDue(now);
    const inserts = s.invoices.inserts;
    s.effects.length = 0;

    expect(await s.close.runDue(now)).toEqual({ ran: true, finalized: [] });
    const byHand = await s.close.closeByHand('2026-09', { dryRun: false, nowMs: now });
    const preview = await s.close.closeByHand('2026-09', { dryRun: true, nowMs: now + 30 * DAY });

    expect(byHand.invoices).toEqual(first.finalized);
    expect(preview.invoices.map((i) => i.lines)).toEqual(first.finalized.map((i) => i.lines));
    expect(s.invoices.inserts).toBe(inserts);
    expect(s.effects.filter((e) => e.startsWith('numbering') || e.startsWith('invoices.insert'))).toEqual([]);
  });

  it('usage ingested after a period was finalized is a correction on the next invoice', async () => {
    const s = setup();
    s.ingest('acme', '2026-09-10T00:00:00Z', SEP + 10 * DAY, '3');
    s.ingest('acme', '2026-10-05T00:00:00Z', OCT + 5 * DAY, '2');
    await s.close.runDue(OCT + GRACE + 1000);
    // Late: event time in September, ingested after September was finalized.
    s.ingest('acme', '2026-09-15T00:00:00Z', OCT + 3 * DAY, '5');

    const { finalized } = await s.close.runDue(NOV + GRACE + 1000);

    const october = finalized.find((i) => i.customer === 'acme')!;
    expect(usageLine(october)).toBe('2');
    const corrections = october.lines.filter((l) => l.kind === 'correction');
    expect(corrections.map((l) => [l.periodStart, l.quantity, l.amount, l.source])).toEqual([[iso(SEP), '5', '0.50', { kind: 'correction', charge: 'calls', periodStartMs: SEP }]]);
    expect(corrections[0]!.id).toBe(`${october.id}:correction:calls:${SEP}`);
    expect(finalized.find((i) => i.customer === 'globex')!.lines.filter((l) => l.kind === 'correction')).toEqual([]);
    // September as stored is unchanged.
    const [september] = await s.invoices.finalized({ customer: 'acme' });
    expect(usageLine(september!.invoice)).toBe('3');
  });

  it('a one-time credit applied on a finalized invoice is not applied again', async () => {
    const s = setup();
    await s.adjustments.add({ customer: 'acme', kind: 'credit', currency: 'USD', amount: '4', meter: '', quantity: '0', periodStart: null, expiresAt: null, reasonCode: 'goodwill', note: '', actor: 't' }, SEP + DAY);
    const { finalized: sep } = await s.close.runDue(OCT + GRACE + 1000);
    const { finalized: oct } = await s.close.runDue(NOV + GRACE + 1000);

    const adjustmentLines = (customerKey: string, list: typeof sep) => list.find((i) => i.customer === customerKey)!.lines.filter((l) => l.kind === 'adjustment').map((l) => [l.amount, l.source]);
    expect(adjustmentLines('acme', sep)).toEqual([['-4.00', { kind: 'adjustment', adjustmentId: 'adj_1' }]]);
    expect(adjustmentLines('acme', oct)).toEqual([]);
  });

  it('a request served during a close reads the stores, not the close context', async () => {
    const s = setup();
    s.ingest('acme', '2026-10-02T00:00:00Z', OCT + DAY + 1);
    const now = OCT + GRACE + 1000;
    let during: Awaited<ReturnType<typeof s.projection.projected>> | undefined;
    s.numbering.onAllocate = async () => {
      // The close loaded the adjustments when it began; this one is newer.
      await s.adjustments.add({ customer: 'acme', kind: 'charge', currency: 'USD', amount: '2', meter: '', quantity: '0', periodStart: null, expiresAt: null, reasonCode: 'setup', note: '', actor: 't' }, now - 1);
      s.effects.length = 0;
      during = await s.projection.projected('acme', now);
    };

    await s.close.runDue(now);

    expect(during![0]!.soFar.lines.filter((l) => l.kind === 'adjustment').map((l) => l.amount)).toEqual(['2.00']);
    expect(usageLine(during![0]!.soFar)).toBe('1');
    // Its usage came from the one-subject read, not the close's batched one.
    expect(s.effects).toContain(`usage.quantityAtCutoff acme ${iso(now)}`);
    expect(s.effects.some((e) => e.startsWith('usage.quantitiesAtCutoff'))).toBe(false);
  });

  it('a close while another holds the lease does nothing', async () => {
    const s = setup();
    s.leases.held = true;
    expect(await s.close.runDue(OCT + GRACE + 1000)).toEqual({ ran: false, finalized: [] });
    await expect(s.close.closeByHand('2026-09', { dryRun: false, nowMs: OCT + GRACE + 1000 })).rejects.toMatchObject({ code: 'CATALOG_CONFLICT' });
    expect(s.effects).toEqual([]);
  });

  it('refuses a month that does not exist (2026-13 is not January 2027), reading nothing', async () => {
    const s = setup();
    for (const month of ['2026-13', '2026-00', '2026-9', '26-09']) {
      await expect(s.close.closeByHand(month, { dryRun: true, nowMs: OCT + GRACE + 1000 })).rejects.toMatchObject({ code: 'REQUEST_INVALID' });
    }
    expect(s.effects).toEqual([]);
  });
});
