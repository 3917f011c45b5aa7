import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Decimal } from '../common/decimal.ts';
import type { Customer, Discount, Plan, Subscription } from './catalog.ts';
import { buildInvoice } from './invoice-builder.ts';
import { checkJournal, journalCsv, journalEntries } from './journal.ts';
import { periodAt } from './periods.ts';
import { decimal } from './pricing/test-arbitraries.ts';
import { itemsThrough, revenueReport, type InvoiceInZone } from './revenue.ts';

const T = (s: string) => Date.parse(s);

const plan = (fee: string, timing: 'advance' | 'arrears', interval: Plan['interval'], minimumCommitment?: string): Plan => ({
  key: 'p',
  name: 'Pro',
  currency: 'USD',
  interval,
  baseFee: { amount: fee, timing },
  charges: [{ key: 'calls', meter: 'api-calls', price: { model: 'per_unit', unitPrice: '0.013' } }],
  ...(minimumCommitment ? { minimumCommitment } : {}),
  createdAt: '2026-01-01T00:00:00Z',
});

interface Scenario {
  tz: string;
  fee: string;
  timing: 'advance' | 'arrears';
  interval: Plan['interval'];
  minimum?: string;
  discounts: Discount[];
  usage: string[];
  credit?: string;
  anchorDay: number;
}

/** Consecutive finalized invoices of one subscription, as the close makes them (the first bills its own period in advance too). */
function invoicesOf(s: Scenario, currency = 'USD', customerKey = 'acme'): InvoiceInZone[] {
  const customer: Customer = { key: customerKey, name: customerKey, currency, timeZone: s.tz, createdAt: '2026-01-01T00:00:00Z' };
  const anchor = new Date(Date.UTC(2026, 9, s.anchorDay)).toISOString();
  const sub: Subscription = { id: `sub_${customerKey}`, customer: customerKey, anchor, phases: [{ plan: 'p', start: anchor }], discounts: s.discounts, createdAt: anchor };
  const plans = { p: { ...plan(s.fee, s.timing, s.interval, s.minimum), currency } };
  const out: InvoiceInZone[] = [];
  let period = periodAt(T(anchor), s.interval, T(anchor), s.tz);
  s.usage.forEach((quantity, i) => {
    const next = periodAt(T(anchor), s.interval, period.end, s.tz);
    const inv = buildInvoice({
      invoiceId: `inv_${customerKey}_${i}`,
      customer,
      subscription: sub,
      plans,
      period,
      firstPeriod: i === 0,
      nextPeriod: next,
      usage: { calls: { quantity } },
      cutoffMs: period.end,
      credits: s.credit && i === 0 ? [{ id: 'g1', amount: s.credit, drawn: '0', createdAtMs: 0 }] : [],
    });
    out.push({ invoice: { ...inv, status: 'finalized', number: `ML-${customerKey}-${i + 1}` }, timeZone: s.tz });
    period = next;
  });
  return out;
}

const scenario: fc.Arbitrary<Scenario> = fc.record({
  tz: fc.constantFrom('UTC', 'America/New_York', 'Asia/Tokyo', 'Australia/Lord_Howe', 'Pacific/Chatham'),
  fee: decimal(5000, 2),
  timing: fc.constantFrom('advance' as const, 'arrears' as const),
  interval: fc.constantFrom('month' as const, 'quarter' as const, 'year' as const),
  minimum: fc.option(decimal(500, 2), { nil: undefined }),
  discounts: fc.array(
    fc.oneof(
      fc.record({ type: fc.constant('percent' as const), value: fc.integer({ min: 1, max: 100 }).map(String) }),
      fc.record({ type: fc.constant('amount' as const), value: decimal(300, 2) }),
      fc.record({ type: fc.constant('percent' as const), value: fc.integer({ min: 1, max: 100 }).map(String), charge: fc.constant('calls') }),
    ),
    { maxLength: 2 },
  ),
  usage: fc.array(decimal(100_000, 3), { minLength: 1, maxLength: 4 }),
  credit: fc.option(decimal(200, 2), { nil: undefined }),
  anchorDay: fc.integer({ min: 1, max: 31 }),
});

const months = ['2026-09', '2026-10', '2026-11', '2026-12', '2027-01', '2027-02', '2027-03', '2027-06', '2027-10', '2027-12', '2028-01'];

describe('journal: every month balances and ties out (property)', () => {
  it('debits = credits per entry and currency; receivable = invoice totals; deferred rolls forward; the journal matches the report', () => {
    fc.assert(
      fc.property(scenario, scenario, (a, b) => {
        const invoices = [...invoicesOf(a), ...invoicesOf(b, 'JPY', 'kaito')];
        for (const month of months) {
          const check = checkJournal(invoices, month);
          expect(check.checks.filter((c) => !c.ok)).toEqual([]);
          for (const e of journalEntries(invoices, month)) expect(e.lines.reduce((s, l) => s.plus(l.amountMinor), new Decimal(0)).toFixed()).toBe('0');
        }
        // Over all months, everything billed is recognized: the months' recognized sum to the invoice totals.
        const items = itemsThrough(invoices, '9999-12');
        const all = [...new Set(items.flatMap((i) => [i.billedMonth, ...i.schedule.map((e) => e.month)]))];
        for (const currency of ['USD', 'JPY']) {
          const recognized = all.flatMap((m) => revenueReport(items, m).totals).filter((t) => t.currency === currency).reduce((x, t) => x.plus(t.recognized), new Decimal(0));
          const billed = invoices.filter((i) => i.invoice.currency === currency).reduce((x, i) => x.plus(i.invoice.total), new Decimal(0));
          expect(recognized.toFixed()).toBe(billed.toFixed());
        }
      }),
      { numRuns: 25 },
    );
  });

  it('a check fails when an invoice total does not match its lines: A/R takes the total, revenue the lines', () => {
    const [inv] = invoicesOf({ tz: 'UTC', fee: '10', timing: 'arrears', interval: 'month', discounts: [], usage: ['100'], anchorDay: 1 });
    const broken = { ...inv!, invoice: { ...inv!.invoice, totalMinor: String(Number(inv!.invoice.totalMinor) + 1) } };
    const check = checkJournal([broken], '2026-10');
    expect(check.ok).toBe(false);
    expect(check.checks.filter((c) => !c.ok).map((c) => c.name)).toEqual(['entries_balance', 'billed_equals_invoice_totals']);
  });
});

describe('journal entries and CSV layouts (table)', () => {
  // October 2026: $30/month in advance, 1000 calls at 0.013; the first invoice bills October and November in advance.
  const invoices = invoicesOf({ tz: 'UTC', fee: '30', timing: 'advance', interval: 'month', discounts: [{ type: 'percent', value: '10' }], usage: ['1000', '2000'], anchorDay: 1 });

  it('the invoice entry: A/R debited with the total, revenue credited for the month, deferred revenue for the rest', () => {
    const [first] = journalEntries(invoices, '2026-10');
    // Lines: Oct fee 30, Nov fee 30, usage 13, 10% off 73 = -7.30 (split -3.00 / -3.00 / -1.30); total 65.70.
    expect(first!.lines.map((l) => [l.account, l.product ?? null, l.amountMinor.toFixed()])).toEqual([
      ['receivable', null, '6570'],
      ['deferred', null, '-2700'],
      ['revenue', 'base_fee', '-3000'],
      ['revenue', 'usage.calls', '-1300'],
      ['contra', 'base_fee', '300'],
      ['contra', 'usage.calls', '130'],
    ]);
  });

  it("the next month: its own invoice, and a recognition entry moving last month's deferral to revenue", () => {
    const entries = journalEntries(invoices, '2026-11');
    expect(entries.map((e) => [e.id, e.date])).toEqual([['ML-acme-2', '2026-11-01'], ['REV-2026-11-USD', '2026-11-30']]);
    expect(entries[1]!.lines.map((l) => [l.account, l.product ?? null, l.amountMinor.toFixed()])).toEqual([
      ['deferred', null, '2700'],
      ['revenue', 'base_fee', '-3000'],
      ['contra', 'base_fee', '300'],
    ]);
  });

  it('QuickBooks Online, Xero and generic rows', () => {
    const entries = journalEntries(invoices, '2026-11').slice(1);
    expect(journalCsv(entries, 'quickbooks')).toEqual({
      header: ['Journal No', 'Journal Date', 'Account Name', 'Debits', 'Credits', 'Description', 'Name'],
      rows: [
        ['REV-2026-11-USD', '11/30/2026', 'Deferred Revenue', '27.00', '', 'Revenue recognized in 2026-11 from earlier invoices (USD)', ''],
        ['REV-2026-11-USD', '11/30/2026', 'Revenue:base_fee', '', '30.00', 'Revenue recognized in 2026-11 from earlier invoices (USD)', ''],
        ['REV-2026-11-USD', '11/30/2026', 'Discounts and Credits:base_fee', '3.00', '', 'Revenue recognized in 2026-11 from earlier invoices (USD)', ''],
      ],
    });
    const xero = journalCsv(entries, 'xero', { xeroTaxRate: 'No VAT' });
    expect(xero.header).toEqual(['Narration', 'Date', 'Description', 'AccountCode', 'TaxRate', 'Amount', 'TrackingName1', 'TrackingOption1']);
    expect(xero.rows.map((r) => [r[1], r[3], r[4], r[5], r[6], r[7]])).toEqual([
      ['30/11/2026', '835', 'No VAT', '27.00', '', ''],
      ['30/11/2026', '200', 'No VAT', '-30.00', 'Product', 'base_fee'],
      ['30/11/2026', '210', 'No VAT', '3.00', 'Product', 'base_fee'],
    ]);
    expect(journalCsv(entries, 'generic').header).toEqual(['entry', 'date', 'currency', 'account', 'account_code', 'product', 'customer', 'invoice_id', 'debit', 'credit', 'narration']);
  });
});
