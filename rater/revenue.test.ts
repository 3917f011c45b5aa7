import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Decimal } from '../common/decimal.ts';
import type { Customer, Plan, Subscription } from './catalog.ts';
import { buildInvoice, type BuildInput } from './invoice-builder.ts';
import type { Invoice, InvoiceLine, LineSource } from './invoice-types.ts';
import { fromLocal } from './periods.ts';
import { toMinor } from './pricing/index.ts';
import { billedMonth, daysPerMonth, recognitionItems, revenueReport, spread, type InvoiceInZone, type RecognitionItem } from './revenue.ts';

const T = (s: string) => Date.parse(s);
const iso = (ms: number) => new Date(ms).toISOString();
const local = (tz: string, y: number, m: number, d: number) => fromLocal({ y, m: m - 1, d, hh: 0, mm: 0, ss: 0 }, tz);

/** A hand-made finalized invoice: its total is the sum of its lines. */
function invoice(lines: Omit<InvoiceLine, 'amountMinor' | 'quantity' | 'breakdown' | 'description'>[], period: { start: number; end: number }, currency = 'USD'): Invoice {
  const full = lines.map((l) => ({ ...l, description: l.kind, quantity: '1', breakdown: [], amountMinor: toMinor(l.amount, currency) }));
  const total = full.reduce((a, l) => a.plus(l.amount), new Decimal(0)).toFixed(2);
  return { id: 'inv_1', number: 'ML-2026-000001', customer: 'acme', currency, periodStart: iso(period.start), periodEnd: iso(period.end), status: 'finalized', cutoff: iso(period.end), lines: full, total, totalMinor: toMinor(total, currency) };
}
const line = (id: string, source: LineSource, amount: string, start: number, end: number, meter?: string) => ({ id: `inv_1:${id}`, kind: source.kind, source, amount, periodStart: iso(start), periodEnd: iso(end), ...(meter ? { meter } : {}) });
const schedule = (it: RecognitionItem) => Object.fromEntries(it.schedule.map((e) => [e.month, e.amountMinor]));
const sumMinor = (items: RecognitionItem[]) => items.reduce((a, i) => a.plus(i.amountMinor), new Decimal(0)).toFixed();

describe('ratable schedules of advance fees (by local day, exact to the cent)', () => {
  const cases: { name: string; tz: string; start: number; end: number; amount: string; expected: Record<string, string> }[] = [
    // Nov 15 - Dec 15: 16 days of November, 14 of December; 10000 × 16/30 = 5333.33 → 5333.
    { name: 'a monthly fee across a month boundary', tz: 'UTC', start: T('2026-11-15T00:00:00Z'), end: T('2026-12-15T00:00:00Z'), amount: '100.00', expected: { '2026-11': '5333', '2026-12': '4667' } },
    // 31 + 28 + 31 = 90 days: 30000 × 31/90 = 10333.33 → 10333; × 59/90 = 19666.67 → 19666 (Feb 9333); March the rest.
    { name: 'a quarterly fee', tz: 'UTC', start: T('2027-01-01T00:00:00Z'), end: T('2027-04-01T00:00:00Z'), amount: '300.00', expected: { '2027-01': '10333', '2027-02': '9333', '2027-03': '10334' } },
    // New York's Nov 1, 2026 has 25 hours and counts as one day: 17 of 31 days in October, 14 in November.
    { name: 'a DST autumn month counts days, not hours', tz: 'America/New_York', start: local('America/New_York', 2026, 10, 15), end: local('America/New_York', 2026, 11, 15), amount: '31.00', expected: { '2026-10': '1700', '2026-11': '1400' } },
    // Mar 14, 2027 has 23 hours: 22 days of March, 9 of April.
    { name: 'a DST spring month', tz: 'America/New_York', start: local('America/New_York', 2027, 3, 10), end: local('America/New_York', 2027, 4, 10), amount: '31.00', expected: { '2027-03': '2200', '2027-04': '900' } },
    // Tokyo's November starts on Oct 31 at 15:00 UTC: a UTC cut would put a day in October.
    { name: "a customer east of UTC, cut in the customer's zone", tz: 'Asia/Tokyo', start: local('Asia/Tokyo', 2026, 11, 1), end: local('Asia/Tokyo', 2026, 12, 1), amount: '30.00', expected: { '2026-11': '3000' } },
    // Starting at noon: half a day on the 30th, then 1 day of December (1.5 days): 1000 × 0.5/1.5 = 333.33 → 333.
    { name: 'a part day counts its share of the day', tz: 'UTC', start: T('2026-11-30T12:00:00Z'), end: T('2026-12-02T00:00:00Z'), amount: '10.00', expected: { '2026-11': '333', '2026-12': '667' } },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const period = { start: c.start - 86_400_000 * 40, end: c.start };
      const inv = invoice([line('base_fee:advance-next', { kind: 'base_fee', timing: 'advance-next' }, c.amount, c.start, c.end)], period);
      const [item] = recognitionItems({ invoice: inv, timeZone: c.tz });
      expect(item!.rule).toBe('ratable');
      expect(schedule(item!)).toEqual(c.expected);
    });
  }

  it('an annual fee: 12 months, each within a cent of its exact share by day, summing to the line', () => {
    const start = T('2027-01-01T00:00:00Z');
    const end = T('2028-01-01T00:00:00Z');
    const inv = invoice([line('base_fee:advance-next', { kind: 'base_fee', timing: 'advance-next' }, '1200.00', start, end)], { start: T('2026-01-01T00:00:00Z'), end: start });
    const [item] = recognitionItems({ invoice: inv, timeZone: 'UTC' });
    expect(item!.schedule.map((e) => e.month)).toEqual(['2027-01', '2027-02', '2027-03', '2027-04', '2027-05', '2027-06', '2027-07', '2027-08', '2027-09', '2027-10', '2027-11', '2027-12']);
    expect(item!.schedule.reduce((a, e) => a + Number(e.amountMinor), 0)).toBe(120000);
    const days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    item!.schedule.forEach((e, i) => expect(Math.abs(Number(e.amountMinor) - (120000 * days[i]!) / 365)).toBeLessThan(1));
    // January: 120000 × 31/365 = 10191.78 → 10191; December gets what is left: 120000 - ⌊120000 × 334/365⌋ = 120000 - 109808.
    expect(item!.schedule[0]!.amountMinor).toBe('10191');
    expect(item!.schedule[11]!.amountMinor).toBe('10192');
  });
});

const customer: Customer = { key: 'acme', name: 'Acme', currency: 'USD', timeZone: 'UTC', createdAt: '2026-01-01T00:00:00Z' };
const plan = (key: string, fee: string, timing: 'advance' | 'arrears', extra: Partial<Plan> = {}): Plan => ({
  key,
  name: key,
  currency: 'USD',
  interval: 'month',
  baseFee: { amount: fee, timing },
  charges: [{ key: 'calls', meter: 'api-calls', price: { model: 'per_unit', unitPrice: '0.01' } }],
  createdAt: '2026-01-01T00:00:00Z',
  ...extra,
});
const sub = (phases: Subscription['phases'], extra: Partial<Subscription> = {}): Subscription => ({ id: 'sub_1', customer: 'acme', anchor: '2026-11-01T00:00:00Z', phases, createdAt: '2026-01-01T00:00:00Z', ...extra });
const november = { start: T('2026-11-01T00:00:00Z'), end: T('2026-12-01T00:00:00Z') };
const december = { start: T('2026-12-01T00:00:00Z'), end: T('2027-01-01T00:00:00Z') };
function built(over: Partial<BuildInput> & Pick<BuildInput, 'subscription' | 'plans'>, tz = 'UTC'): InvoiceInZone {
  const inv = buildInvoice({ invoiceId: 'inv_b', customer: { ...customer, timeZone: tz }, period: november, firstPeriod: false, usage: {}, cutoffMs: november.end + 3_600_000, ...over });
  return { invoice: { ...inv, status: 'finalized', number: 'ML-2026-000002' }, timeZone: tz };
}
const byLine = (items: RecognitionItem[], kind: string) => items.filter((i) => i.lineId.includes(`:${kind}:`));

describe('recognition rules per line (table)', () => {
  it('usage and arrears fees: in the month billed, the invoice period start in the customer zone', () => {
    const inv = built({ subscription: sub([{ plan: 'basic', start: '2026-11-01T00:00:00Z' }]), plans: { basic: plan('basic', '49', 'arrears') }, usage: { calls: { quantity: '1234' } } });
    const items = recognitionItems(inv);
    expect(items.map((i) => [i.product, i.meter ?? null, i.rule, i.account, schedule(i)])).toEqual([
      ['base_fee', null, 'point', 'revenue', { '2026-11': '4900' }],
      ['usage.calls', 'api-calls', 'point', 'revenue', { '2026-11': '1234' }],
    ]);
    expect(sumMinor(items)).toBe(inv.invoice.totalMinor);
  });

  it('a mid-period plan change on a quarterly plan: both proration lines spread by day over [change, period end)', () => {
    const q1 = { start: T('2027-01-01T00:00:00Z'), end: T('2027-04-01T00:00:00Z') };
    const s = sub([{ plan: 'small', start: '2027-01-01T00:00:00Z', end: '2027-02-15T00:00:00Z' }, { plan: 'large', start: '2027-02-15T00:00:00Z' }], { anchor: '2027-01-01T00:00:00Z' });
    const plans = { small: plan('small', '30', 'advance', { interval: 'quarter' }), large: plan('large', '90', 'advance', { interval: 'quarter' }) };
    const inv = built({ subscription: s, plans, period: q1, nextPeriod: { start: q1.end, end: T('2027-07-01T00:00:00Z') } });
    const items = recognitionItems(inv);
    expect(inv.invoice.lines.find((l) => l.kind === 'proration' && l.amount.startsWith('-'))!.amount).toBe('-15.00');
    // 45 days from Feb 15 to Apr 1 (14 in February): -1500 × 14/45 = -466.67 → -466 (toward zero).
    expect(byLine(items, 'proration').map(schedule)).toEqual([
      { '2027-02': '-466', '2027-03': '-1034' },
      { '2027-02': '1400', '2027-03': '3100' },
    ]);
    // The next quarter's fee over 91 days from April: to April's end ⌊9000 × 30/91⌋ = 2967, to May's
    // ⌊9000 × 61/91⌋ = 6032 (May 3065), June the rest.
    expect(schedule(byLine(items, 'base_fee')[0]!)).toEqual({ '2027-04': '2967', '2027-05': '3065', '2027-06': '2968' });
    expect(items.every((i) => i.billedMonth === '2027-01')).toBe(true);
    expect(sumMinor(items)).toBe(inv.invoice.totalMinor);
  });

  it('a minimum-commitment true-up: in the month of the period it tops up', () => {
    const inv = built({ subscription: sub([{ plan: 'min', start: '2026-11-01T00:00:00Z' }]), plans: { min: plan('min', '0', 'arrears', { baseFee: undefined, minimumCommitment: '100' }) }, usage: { calls: { quantity: '2500' } } });
    const items = recognitionItems(inv);
    expect(items.map((i) => [i.product, schedule(i)])).toEqual([
      ['usage.calls', { '2026-11': '2500' }],
      ['minimum_commitment', { '2026-11': '7500' }],
    ]);
  });

  it('a line discount reduces its usage product; an invoice discount is split pro rata and follows each line (an advance fee part is deferred)', () => {
    const s = sub([{ plan: 'pro', start: '2026-11-01T00:00:00Z' }], { discounts: [{ type: 'percent', value: '50', charge: 'calls' }, { type: 'percent', value: '10' }] });
    const inv = built({ subscription: s, plans: { pro: plan('pro', '100', 'advance') }, usage: { calls: { quantity: '2000' } }, nextPeriod: december });
    const items = recognitionItems(inv);
    // Lines: advance fee 100 (December), usage 20, line discount -10, invoice discount -11 (10% of 110).
    expect(items.map((i) => [i.product, i.account, i.amountMinor, schedule(i)])).toEqual([
      ['base_fee', 'revenue', '10000', { '2026-12': '10000' }],
      ['usage.calls', 'revenue', '2000', { '2026-11': '2000' }],
      ['usage.calls', 'contra', '-1000', { '2026-11': '-1000' }],
      // -1100 over 10000, 2000, -1000 (sum 11000): -1000, -200, then the rest +100.
      ['base_fee', 'contra', '-1000', { '2026-12': '-1000' }],
      ['usage.calls', 'contra', '-200', { '2026-11': '-200' }],
      ['usage.calls', 'contra', '100', { '2026-11': '100' }],
    ]);
    expect(sumMinor(items)).toBe(inv.invoice.totalMinor);
    const report = revenueReport(items, '2026-11');
    expect(report.totals).toEqual([{ currency: 'USD', deferredOpening: '0.00', billed: '99.00', recognized: '9.00', deferredClosing: '90.00' }]);
  });

  it('a correction of an earlier period is recognized when invoiced, not in the period it corrects', () => {
    const sept = { start: T('2026-09-01T00:00:00Z'), end: T('2026-10-01T00:00:00Z') };
    const inv = invoice([
      line('usage:calls', { kind: 'usage', charge: 'calls' }, '5.00', november.start, november.end, 'api-calls'),
      line(`correction:calls:${sept.start}`, { kind: 'correction', charge: 'calls', periodStartMs: sept.start }, '2.50', sept.start, sept.end, 'api-calls'),
      line('adjustment:goodwill', { kind: 'adjustment', adjustmentId: 'goodwill' }, '-1.00', november.start, november.end),
    ], november);
    const items = recognitionItems({ invoice: inv, timeZone: 'UTC' });
    expect(items.map((i) => [i.product, i.account, schedule(i)])).toEqual([
      ['usage.calls', 'revenue', { '2026-11': '500' }],
      ['usage.calls', 'revenue', { '2026-11': '250' }],
      ['one_time', 'contra', { '2026-11': '-100' }],
    ]);
  });

  it('a prepaid credit draw is contra revenue split over the lines it pays', () => {
    const inv = built({ subscription: sub([{ plan: 'pro', start: '2026-11-01T00:00:00Z' }]), plans: { pro: plan('pro', '30', 'advance') }, usage: { calls: { quantity: '1000' } }, nextPeriod: december, credits: [{ id: 'g1', amount: '20', drawn: '0', createdAtMs: 0 }] });
    const items = recognitionItems(inv).filter((i) => i.account === 'contra');
    // -2000 over 3000 (fee) and 1000 (usage): -1500 and -500.
    expect(items.map((i) => [i.product, i.amountMinor, schedule(i)])).toEqual([
      ['base_fee', '-1500', { '2026-12': '-1500' }],
      ['usage.calls', '-500', { '2026-11': '-500' }],
    ]);
  });

  it("an invoice is billed in the month its period starts in the customer's zone", () => {
    const tokyoNov = { start: local('Asia/Tokyo', 2026, 11, 1), end: local('Asia/Tokyo', 2026, 12, 1) };
    const inv = invoice([], tokyoNov);
    expect(inv.periodStart).toBe('2026-10-31T15:00:00.000Z');
    expect(billedMonth({ invoice: inv, timeZone: 'Asia/Tokyo' })).toBe('2026-11');
    expect(billedMonth({ invoice: inv, timeZone: 'UTC' })).toBe('2026-10');
  });
});

describe('revenue report', () => {
  it('rolls deferred revenue forward: opening + billed - recognized = closing, month by month', () => {
    const s = sub([{ plan: 'pro', start: '2026-11-01T00:00:00Z' }]);
    const inv = built({ subscription: s, plans: { pro: plan('pro', '100', 'advance') }, usage: { calls: { quantity: '500' } }, nextPeriod: december });
    const items = recognitionItems(inv);
    expect(revenueReport(items, '2026-10').rows).toEqual([]);
    expect(revenueReport(items, '2026-11').rows).toEqual([
      { customer: 'acme', currency: 'USD', product: 'base_fee', deferredOpening: '0.00', billed: '100.00', recognized: '0.00', deferredClosing: '100.00' },
      { customer: 'acme', currency: 'USD', product: 'usage.calls', deferredOpening: '0.00', billed: '5.00', recognized: '5.00', deferredClosing: '0.00' },
    ]);
    expect(revenueReport(items, '2026-12').rows).toEqual([{ customer: 'acme', currency: 'USD', product: 'base_fee', deferredOpening: '100.00', billed: '0.00', recognized: '100.00', deferredClosing: '0.00' }]);
  });
});

describe('properties', () => {
  const zones = fc.constantFrom('UTC', 'America/New_York', 'Asia/Tokyo', 'Australia/Lord_Howe', 'Asia/Kathmandu', 'Pacific/Kiritimati');
  it('a spread sums exactly to the amount and no month is a unit or more off its exact share', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(10n ** 12n), max: 10n ** 12n }), fc.integer({ min: T('2026-01-01T00:00:00Z'), max: T('2028-01-01T00:00:00Z') }), fc.integer({ min: 3_600_000, max: 400 * 86_400_000 }), zones, (amount, start, len, tz) => {
        const weights = daysPerMonth(start, start + len, tz);
        const total = weights.reduce((a, w) => a.plus(w.days), new Decimal(0));
        const s = spread(new Decimal(amount.toString()), weights);
        expect(s.reduce((a, e) => a.plus(e.amountMinor), new Decimal(0)).toFixed()).toBe(amount.toString());
        let exactCum = new Decimal(0);
        let cum = new Decimal(0);
        s.forEach((e, i) => {
          exactCum = exactCum.plus(new Decimal(amount.toString()).mul(weights[i]!.days).div(total));
          cum = cum.plus(e.amountMinor);
          expect(cum.minus(exactCum).abs().lt(1)).toBe(true);
        });
      }),
      { numRuns: 200 },
    );
  });
});
