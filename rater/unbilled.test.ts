import { describe, expect, it } from 'vitest';
import type { Plan, Subscription } from './contracts.ts';
import { listPrice, subtractRanges, unbilledCurrencyTotals, unbilledRanges, unbilledTotals, unionRanges, type UnbilledCatalog, type UnbilledRow } from './unbilled.ts';

const NOV = Date.UTC(2026, 10, 1);
const DEC = Date.UTC(2026, 11, 1);
const DAY = 86_400_000;
const month = { start: NOV, end: DEC };
const iso = (ms: number) => new Date(ms).toISOString();

const plan = (key: string, currency: string, charges: Plan['charges']): Plan => ({ key, name: key, currency, interval: 'month', charges, createdAt: iso(0) });
const sub = (id: string, customer: string, phases: Subscription['phases'], overrides?: Subscription['overrides']): Subscription => ({ id, customer, anchor: phases[0]!.start, phases, createdAt: iso(0), ...(overrides ? { overrides } : {}) });

const pro = plan('pro', 'USD', [{ key: 'calls', meter: 'calls', price: { model: 'per_unit', unitPrice: '0.01' } }]);
const cheap = plan('cheap', 'USD', [
  { key: 'calls', meter: 'calls', price: { model: 'graduated', tiers: [{ upTo: '100', unitPrice: '0' }, { upTo: null, unitPrice: '0.02' }] } },
  { key: 'storage', meter: 'storage', price: { model: 'per_unit', unitPrice: '0.5' } },
]);
const euro = plan('euro', 'EUR', [{ key: 'calls', meter: 'calls', price: { model: 'per_unit', unitPrice: '0.001' } }]);
const dims = plan('dims', 'USD', [{ key: 'tok', meter: 'tokens', price: { model: 'dimensional', dimension: 'model', prices: { a: { model: 'per_unit', unitPrice: '1' } } } }]);

const catalog: UnbilledCatalog = {
  customers: new Map([
    ['full', { key: 'full', currency: 'USD' }],
    ['ends', { key: 'ends', currency: 'USD' }],
    ['none', { key: 'none', currency: 'USD' }],
    ['gap', { key: 'gap', currency: 'USD' }],
    ['euro-co', { key: 'euro-co', currency: 'EUR' }],
  ]),
  plans: [pro, cheap, euro, dims],
  subscriptions: [
    sub('s-full', 'full', [{ plan: 'pro', start: iso(NOV - 30 * DAY) }], { charges: { calls: { model: 'per_unit', unitPrice: '0.005' } } }),
    sub('s-ends', 'ends', [{ plan: 'pro', start: iso(NOV - 30 * DAY), end: iso(NOV + 10 * DAY) }]),
    sub('s-gap1', 'gap', [{ plan: 'pro', start: iso(NOV), end: iso(NOV + 5 * DAY) }]),
    sub('s-gap2', 'gap', [{ plan: 'pro', start: iso(NOV + 7 * DAY), end: iso(NOV + 20 * DAY) }, { plan: 'euro', start: iso(NOV + 20 * DAY) }]),
  ],
};

describe('range arithmetic', () => {
  it.each([
    [[{ start: 5, end: 7 }, { start: 1, end: 3 }, { start: 3, end: 4 }], [{ start: 1, end: 4 }, { start: 5, end: 7 }]],
    [[{ start: 1, end: 1 }], []],
    [[{ start: 1, end: 10 }, { start: 2, end: 3 }], [{ start: 1, end: 10 }]],
  ])('unionRanges(%j) = %j', (input, want) => expect(unionRanges(input)).toEqual(want));
  it.each([
    [[{ start: 0, end: 10 }], [{ start: 2, end: 4 }, { start: 6, end: 12 }], [{ start: 0, end: 2 }, { start: 4, end: 6 }]],
    [[{ start: 0, end: 10 }], [], [{ start: 0, end: 10 }]],
    [[{ start: 0, end: 10 }], [{ start: -5, end: 20 }], []],
  ])('subtractRanges(%j, %j) = %j', (a, b, want) => expect(subtractRanges(a, b)).toEqual(want));
});

describe('unbilledRanges: each part of the month gets the first reason that applies', () => {
  it.each<[string, string, string, ReturnType<typeof unbilledRanges>]>([
    ['a customer covered all month by a plan charging the meter', 'full', 'calls', []],
    ['a meter no plan charges, even for a covered customer', 'full', 'gpu', [{ reason: 'meter_not_priced', ranges: [month] }]],
    ['a meter no plan charges, from an unknown subject', 'ghost', 'gpu', [{ reason: 'meter_not_priced', ranges: [month] }]],
    ['a subject that is no customer', 'ghost', 'calls', [{ reason: 'unknown_subject', ranges: [month] }]],
    ['a customer without any subscription', 'none', 'calls', [{ reason: 'no_subscription', ranges: [month] }]],
    ['a subscription ending on the 11th', 'ends', 'calls', [{ reason: 'no_subscription', ranges: [{ start: NOV + 10 * DAY, end: DEC }] }]],
    ['a charged meter the plan in force does not charge', 'full', 'storage', [{ reason: 'meter_not_in_plan', ranges: [month] }]],
    [
      'a gap between two subscriptions, then a plan change to a plan charging the meter',
      'gap',
      'calls',
      [{ reason: 'no_subscription', ranges: [{ start: NOV + 5 * DAY, end: NOV + 7 * DAY }] }],
    ],
    [
      'a gap, and a meter only the other plan charges',
      'gap',
      'storage',
      [
        { reason: 'no_subscription', ranges: [{ start: NOV + 5 * DAY, end: NOV + 7 * DAY }] },
        { reason: 'meter_not_in_plan', ranges: [{ start: NOV, end: NOV + 5 * DAY }, { start: NOV + 7 * DAY, end: DEC }] },
      ],
    ],
  ])('%s', (_what, subject, meter, want) => expect(unbilledRanges(subject, meter, month, catalog)).toEqual(want));

  it('the reasons of a subject and meter never overlap and stay inside the month', () => {
    for (const subject of ['full', 'ends', 'none', 'gap', 'ghost', 'euro-co'])
      for (const meter of ['calls', 'storage', 'gpu', 'tokens']) {
        const ranges = unbilledRanges(subject, meter, month, catalog).flatMap((r) => r.ranges);
        const total = ranges.reduce((acc, r) => acc + (r.end - r.start), 0);
        expect(unionRanges(ranges).reduce((acc, r) => acc + (r.end - r.start), 0)).toBe(total);
        for (const r of ranges) expect(r.start >= NOV && r.end <= DEC).toBe(true);
      }
  });
});

describe('listPrice', () => {
  it.each<[string, string, string, string, Partial<ReturnType<typeof listPrice>>]>([
    // The customer's own plan, with its negotiated override: 1000 × 0.005.
    ['own plan with override', 'full', 'calls', '1000', { amount: '5.00', currency: 'USD', plan: 'pro', charge: 'calls', priceSource: 'subscription_plan' }],
    // After the end: the plan the customer was on.
    ['last plan after the end', 'ends', 'calls', '250', { amount: '2.50', currency: 'USD', plan: 'pro', priceSource: 'subscription_plan' }],
    // Unknown subject: pro 150 × 0.01 = 1.50 vs cheap 50 × 0.02 = 1.00 (USD is the currency most plans use); lowest wins.
    ['unknown subject: the lowest USD price', 'ghost', 'calls', '150', { amount: '1.00', currency: 'USD', plan: 'cheap', priceSource: 'catalog_lowest' }],
    // At 50 calls cheap is free (its first 100 are 0): 0.00.
    ['unknown subject: a free first tier', 'ghost', 'calls', '50', { amount: '0.00', plan: 'cheap' }],
    // A EUR customer without a subscription: only the EUR plan.
    ['a customer in its own currency', 'euro-co', 'calls', '1000', { amount: '1.00', currency: 'EUR', plan: 'euro', priceSource: 'catalog_lowest' }],
    // The plan in force does not charge storage: the catalog's price.
    ['meter not in the own plan', 'full', 'storage', '3', { amount: '1.50', plan: 'cheap', charge: 'storage', priceSource: 'catalog_lowest' }],
    ['a meter no plan charges', 'full', 'gpu', '3', { amount: null, currency: null, plan: null, priceSource: null, note: 'no plan charges this meter' }],
    ['a meter priced per dimension only', 'ghost', 'tokens', '3', { amount: null, priceSource: null }],
    ['an exact fractional quantity', 'none', 'calls', '100.5', { amount: '0.01', plan: 'cheap' }],
  ])('%s', (_what, subject, meter, quantity, want) => expect(listPrice(subject, meter, quantity, month, catalog)).toMatchObject(want));
});

describe('unbilledTotals', () => {
  const row = (reason: UnbilledRow['reason'], amount: string | null, currency: string | null): UnbilledRow => ({ reason, subject: 's', customer: null, meter: 'm', aggregation: 'SUM', quantity: '1', ranges: [], amount, currency, plan: null, charge: null, priceSource: null });
  it('sums per reason and currency; unpriced rows are counted, never summed', () => {
    expect(unbilledTotals([row('unknown_subject', '1.10', 'USD'), row('meter_not_priced', null, null), row('unknown_subject', '2.25', 'USD'), row('unknown_subject', '7', 'JPY'), row('no_subscription', '0.10', 'USD')])).toEqual([
      { reason: 'meter_not_priced', currency: null, amount: null, rows: 1 },
      { reason: 'unknown_subject', currency: 'JPY', amount: '7', rows: 1 },
      { reason: 'unknown_subject', currency: 'USD', amount: '3.35', rows: 2 },
      { reason: 'no_subscription', currency: 'USD', amount: '0.10', rows: 1 },
    ]);
  });
  it('sums per currency over every reason', () => {
    expect(unbilledCurrencyTotals([row('unknown_subject', '1.10', 'USD'), row('meter_not_priced', null, null), row('no_subscription', '0.10', 'USD'), row('unknown_subject', '7', 'JPY')])).toEqual([
      { currency: 'JPY', amount: '7', rows: 1 },
      { currency: 'USD', amount: '1.20', rows: 2 },
    ]);
  });
});

describe('plan versions: a phase is billed with the version it pins', () => {
  const v1 = { key: 'vplan', name: 'V', currency: 'USD', interval: 'month' as const, charges: [{ key: 'calls', meter: 'calls', price: { model: 'per_unit' as const, unitPrice: '0.01' } }], version: 1, effectiveFrom: iso(0), createdAt: iso(0) };
  const v2 = { ...v1, charges: [], version: 2, effectiveFrom: iso(NOV - DAY) };
  // As stored: the latest version at the top, every version in `versions`.
  const vplan = { ...v2, versions: [v1, v2] } as Plan;
  const withPhase = (version: number): UnbilledCatalog => ({
    customers: new Map([['p', { key: 'p', currency: 'USD' }]]),
    plans: [vplan],
    subscriptions: [sub('s', 'p', [{ plan: 'vplan', start: iso(NOV - 30 * DAY), ...{ version } }])],
  });
  it('version 1 still charges calls: nothing unbilled', () => expect(unbilledRanges('p', 'calls', month, withPhase(1))).toEqual([]));
  it('version 2 does not: the month is meter_not_in_plan, priced with version 1 (the catalog knows the meter)', () => {
    expect(unbilledRanges('p', 'calls', month, withPhase(2))).toEqual([{ reason: 'meter_not_in_plan', ranges: [month] }]);
    expect(listPrice('p', 'calls', '300', month, withPhase(2))).toMatchObject({ amount: '3.00', plan: 'vplan', priceSource: 'catalog_lowest' });
  });
});
