import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Decimal } from 'decimal.js';
import type { Customer, Plan, Subscription } from './catalog.ts';
import { buildInvoice, describeInstant, usageGroups, type BuildInput } from './invoice-builder.ts';
import type { Price } from './pricing/types.ts';

const T = (s: string) => Date.parse(s);
const customer: Customer = { key: 'acme', name: 'Acme', currency: 'USD', timeZone: 'UTC', createdAt: '2026-01-01T00:00:00Z' };
const graduated: Price = {
  model: 'graduated',
  tiers: [
    { upTo: '1000', unitPrice: '0.01' },
    { upTo: '10000', unitPrice: '0.005', flatFee: '2' },
    { upTo: null, unitPrice: '0.001' },
  ],
};
const plan = (key: string, fee: string, timing: 'advance' | 'arrears', price: Price = graduated, extra: Partial<Plan> = {}): Plan => ({
  key,
  name: key,
  currency: 'USD',
  interval: 'month',
  baseFee: { amount: fee, timing },
  charges: [{ key: 'calls', meter: 'api-calls', price }],
  createdAt: '2026-01-01T00:00:00Z',
  ...extra,
});
const sub = (phases: Subscription['phases'], extra: Partial<Subscription> = {}): Subscription => ({ id: 'sub_1', customer: 'acme', anchor: '2026-03-01T00:00:00Z', phases, createdAt: '2026-01-01T00:00:00Z', ...extra });
const march = { start: T('2026-03-01T00:00:00Z'), end: T('2026-04-01T00:00:00Z') };
const april = { start: T('2026-04-01T00:00:00Z'), end: T('2026-05-01T00:00:00Z') };

function build(over: Partial<BuildInput> & Pick<BuildInput, 'subscription' | 'plans'>): ReturnType<typeof buildInvoice> {
  return buildInvoice({ invoiceId: 'inv_t', customer, period: march, firstPeriod: false, usage: {}, cutoffMs: march.end + 3_600_000, ...over });
}
const byKind = (inv: ReturnType<typeof buildInvoice>, kind: string) => inv.lines.filter((l) => l.kind === kind);

describe('invoice builder', () => {
  it('arrears base fee for a full period and graduated usage with a tier breakdown', () => {
    const inv = build({ subscription: sub([{ plan: 'basic', start: '2026-03-01T00:00:00Z' }]), plans: { basic: plan('basic', '49', 'arrears') }, usage: { calls: { quantity: '12000' } } });
    expect(byKind(inv, 'base_fee').map((l) => l.amount)).toEqual(['49.00']);
    const usage = byKind(inv, 'usage')[0]!;
    // 1000 × 0.01 + 9000 × 0.005 + 2 + 2000 × 0.001 = 10 + 45 + 2 + 2 = 59
    expect(usage.amount).toBe('59.00');
    expect(usage.breakdown.map((r) => r.units)).toEqual(['1000', '9000', '2000']);
    expect(inv.total).toBe('108.00');
    expect(inv.totalMinor).toBe('10800');
  });

  it('a zero-usage period still gives an invoice (with a zero usage line)', () => {
    const inv = build({ subscription: sub([{ plan: 'free', start: '2026-03-01T00:00:00Z' }]), plans: { free: plan('free', '0', 'arrears') } });
    expect(inv.total).toBe('0.00');
    expect(byKind(inv, 'usage')[0]!.amount).toBe('0.00');
  });

  it('upgrade mid-period, advance fees: credit unused old fee, charge new fee for the rest (Stripe proration)', () => {
    // $10/month -> $20/month at exactly half of March (15.5 days of 31).
    const half = march.start + (march.end - march.start) / 2;
    const s = sub([
      { plan: 'small', start: '2026-03-01T00:00:00Z', end: new Date(half).toISOString() },
      { plan: 'large', start: new Date(half).toISOString() },
    ]);
    const inv = build({ subscription: s, plans: { small: plan('small', '10', 'advance'), large: plan('large', '20', 'advance') }, nextPeriod: april });
    // The change is 15.5 days in: the line names it in the customer's words, not as an ISO timestamp.
    expect(byKind(inv, 'proration').map((l) => [l.description, l.amount])).toEqual([
      ['Unused time on small after Mar 16, 2026, 12:00 (UTC)', '-5.00'],
      ['Remaining time on large from Mar 16, 2026, 12:00 (UTC)', '10.00'],
    ]);
    expect(byKind(inv, 'base_fee').map((l) => l.amount)).toEqual(['20.00']); // April in advance, on the new plan
  });

  it('a plan change at local midnight is named by its local date, in the customer\'s zone', () => {
    // Midnight in New York on Mar 14 is 04:00 UTC (EDT since Mar 8): the line says Mar 14, not an instant.
    const t = T('2026-03-14T04:00:00Z');
    const s = sub([
      { plan: 'small', start: '2026-03-01T05:00:00Z', end: new Date(t).toISOString() },
      { plan: 'large', start: new Date(t).toISOString() },
    ]);
    const ny = { ...customer, timeZone: 'America/New_York' };
    const inv = build({ customer: ny, subscription: s, plans: { small: plan('small', '10', 'advance'), large: plan('large', '20', 'advance') } });
    expect(byKind(inv, 'proration').map((l) => l.description)).toEqual(['Unused time on small after Mar 14, 2026', 'Remaining time on large from Mar 14, 2026']);
    for (const l of inv.lines) expect(l.description).not.toMatch(/\d{4}-\d{2}-\d{2}T/);
  });

  it.each([
    ['2026-11-14T05:00:00Z', 'America/New_York', 'Nov 14, 2026'],
    ['2026-11-14T00:00:00Z', 'America/New_York', 'Nov 13, 2026, 19:00 (America/New_York)'],
    ['2026-11-13T23:00:00Z', 'Europe/Berlin', 'Nov 14, 2026'],
    ['2026-11-21T06:17:31Z', 'UTC', 'Nov 21, 2026, 06:17 (UTC)'],
  ])('describeInstant(%s, %s) = %s', (at, tz, text) => {
    expect(describeInstant(T(at), tz)).toBe(text);
  });

  it('proration is to the second', () => {
    const t = T('2026-03-11T06:00:00Z'); // 10.25 days into 31
    const s = sub([{ plan: 'small', start: '2026-03-01T00:00:00Z', end: new Date(t).toISOString() }]);
    const inv = build({ subscription: s, plans: { small: plan('small', '31', 'advance') } });
    // Cancelled at t: credit 31 × 20.75/31 = 20.75.
    expect(byKind(inv, 'proration').map((l) => l.amount)).toEqual(['-20.75']);
    expect(byKind(inv, 'base_fee')).toEqual([]); // no next period
  });

  it('arrears fees are charged per phase for the time each plan was in force', () => {
    const t = T('2026-03-21T00:00:00Z'); // 20 of 31 days
    const s = sub([
      { plan: 'a', start: '2026-03-01T00:00:00Z', end: new Date(t).toISOString() },
      { plan: 'b', start: new Date(t).toISOString() },
    ]);
    const inv = build({ subscription: s, plans: { a: plan('a', '31', 'arrears'), b: plan('b', '62', 'arrears') } });
    expect(byKind(inv, 'base_fee').map((l) => l.amount)).toEqual(['20.00', '22.00']);
  });

  it('the first invoice of an advance plan bills its own period too', () => {
    const inv = build({ subscription: sub([{ plan: 'p', start: '2026-03-01T00:00:00Z' }]), plans: { p: plan('p', '10', 'advance') }, firstPeriod: true, nextPeriod: april });
    expect(byKind(inv, 'base_fee').map((l) => l.amount)).toEqual(['10.00', '10.00']);
  });

  it('usage before and after a plan change is priced under the plan in force', () => {
    const t = '2026-03-16T00:00:00Z';
    const s = sub([
      { plan: 'cheap', start: '2026-03-01T00:00:00Z', end: t },
      { plan: 'dear', start: t },
    ]);
    const plans = { cheap: plan('cheap', '0', 'arrears', { model: 'per_unit', unitPrice: '0.01' }), dear: plan('dear', '0', 'arrears', { model: 'per_unit', unitPrice: '0.02' }) };
    const groups = usageGroups(s, plans, march);
    expect(groups.map((g) => [g.id, new Date(g.ranges[0]!.start).toISOString()])).toEqual([
      ['calls', '2026-03-01T00:00:00.000Z'],
      ['calls#2', '2026-03-16T00:00:00.000Z'],
    ]);
    const inv = build({ subscription: s, plans, usage: { calls: { quantity: '100' }, 'calls#2': { quantity: '100' } } });
    expect(byKind(inv, 'usage').map((l) => l.amount)).toEqual(['1.00', '2.00']);
  });

  it('minimum commitment true-up, line and invoice discounts, prepaid credits down to zero', () => {
    const p = plan('p', '0', 'arrears', { model: 'per_unit', unitPrice: '1' }, { minimumCommitment: '100' });
    const s = sub([{ plan: 'p', start: '2026-03-01T00:00:00Z' }], {
      discounts: [
        { type: 'percent', value: '10', charge: 'calls' },
        { type: 'amount', value: '5' },
      ],
    });
    const inv = build({
      subscription: s,
      plans: { p },
      usage: { calls: { quantity: '40' } },
      credits: [{ id: 'adj_grant', amount: '1000', drawn: '0', createdAtMs: march.start }],
    });
    expect(inv.lines.map((l) => [l.kind, l.amount])).toEqual([
      ['base_fee', '0.00'],
      ['usage', '40.00'],
      ['discount', '-4.00'],
      ['minimum_true_up', '60.00'],
      ['discount', '-5.00'],
      ['credit', '-91.00'],
    ]);
    expect(inv.total).toBe('0.00');
  });

  it('rounds once per line, half-up, and the total is the sum of the rounded lines', () => {
    const p = plan('p', '0', 'arrears', { model: 'per_unit', unitPrice: '0.001' });
    const inv = build({ subscription: sub([{ plan: 'p', start: '2026-03-01T00:00:00Z' }]), plans: { p }, usage: { calls: { quantity: '5' } } });
    expect(byKind(inv, 'usage')[0]!.amount).toBe('0.01'); // 0.005 rounds half-up to 0.01
    expect(byKind(inv, 'usage')[0]!.breakdown[0]!.amount).toBe('0.005'); // the breakdown stays exact
    expect(inv.total).toBe(inv.lines.reduce((a, l) => a.plus(l.amount), new Decimal(0)).toFixed(2));
  });

  it('property: a period split into two phases of the same plan prices like the whole period', () => {
    const p = plan('p', '30', 'arrears');
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 30 * 86_400 - 1 }), fc.integer({ min: 0, max: 20_000 }), (splitS, q) => {
        const t = new Date(march.start + splitS * 1000).toISOString();
        const whole = build({ subscription: sub([{ plan: 'p', start: '2026-03-01T00:00:00Z' }]), plans: { p }, usage: { calls: { quantity: String(q) } } });
        const split = sub([
          { plan: 'p', start: '2026-03-01T00:00:00Z', end: t },
          { plan: 'p', start: t },
        ]);
        const groups = usageGroups(split, { p }, march);
        expect(groups).toHaveLength(1);
        const inv = build({ subscription: split, plans: { p }, usage: { calls: { quantity: String(q) } } });
        const usage = (i: typeof inv) => i.lines.filter((l) => l.kind === 'usage').reduce((a, l) => a.plus(l.amount), new Decimal(0)).toFixed();
        expect(usage(inv)).toBe(usage(whole));
      }),
      { numRuns: 200 },
    );
  });
});
