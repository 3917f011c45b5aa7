import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { D } from './decimal.ts';
import { rate, roundMoney } from './index.ts';
import { quantity, transform } from './test-arbitraries.ts';
import type { Price } from './types.ts';

describe('quantity transform and included units', () => {
  // Stripe, https://docs.stripe.com/billing/subscriptions/usage-based/transform-quantities: usage in
  // minutes, 10 USD per hour, divide_by 60 rounded up: 150 minutes → 3 hours → 30 USD.
  it("Stripe's car rental: 150 minutes at 10 USD per started hour cost 30 USD", () => {
    const p: Price = { model: 'per_unit', unitPrice: '10', transform: { divideBy: '60', round: 'up' } };
    expect(rate(p, { quantity: '150' })).toEqual({
      amount: '30',
      billedQuantity: '3',
      breakdown: [
        { description: 'Quantity 150 ÷ 60, rounded up to a whole number: 3', units: '3', amount: '0' },
        { description: '3 × 10', units: '3', unitPrice: '10', amount: '30' },
      ],
    });
  });

  // Stripe, https://stripe.com/docs/billing/subscriptions/quantity-transformation: transform_quantity
  // divide_by 5, round up, 10 USD per unit: 6 users bill a quantity of 2 (20 USD).
  it.each([
    // [divideBy, round, quantity, billed]
    ['5', 'up', '6', '2'],
    ['5', 'up', '5', '1'], // exactly divisible: no rounding
    ['5', 'up', '0', '0'],
    ['5', 'down', '6', '1'],
    ['5', 'down', '4.99', '0'],
    ['1000000', 'up', '1500000', '2'], // bytes → MB
    ['3', 'up', '10', '4'], // non-terminating quotient, rounded exactly
    ['3', 'down', '10', '3'],
    ['0.5', 'up', '1.25', '3'], // fractional divisor
    ['1000', 'up', '1e20', '100000000000000000'],
  ] as const)('divide by %s, round %s: %s → %s', (divideBy, round, q, billed) => {
    const p: Price = { model: 'per_unit', unitPrice: '1', transform: { divideBy, round } };
    expect(rate(p, { quantity: q }).billedQuantity).toBe(billed);
  });

  it('transforms first, then deducts included units (never below 0)', () => {
    const p: Price = { model: 'per_unit', unitPrice: '2', transform: { divideBy: '1000', round: 'up' }, includedUnits: '10' };
    expect(rate(p, { quantity: '12500' })).toEqual({
      amount: '6',
      billedQuantity: '3',
      breakdown: [
        { description: 'Quantity 12500 ÷ 1000, rounded up to a whole number: 13', units: '13', amount: '0' },
        { description: 'Included units: 10 of 10 used, free of charge', units: '10', unitPrice: '0', amount: '0' },
        { description: '3 × 2', units: '3', unitPrice: '2', amount: '6' },
      ],
    });
    expect(rate(p, { quantity: '4000' })).toMatchObject({ amount: '0', billedQuantity: '0' });
    expect(rate(p, { quantity: '4000' }).breakdown[1]).toMatchObject({ description: 'Included units: 4 of 10 used, free of charge', units: '4' });
  });

  it('applies to every quantity model', () => {
    const common = { transform: { divideBy: '10', round: 'up' as const }, includedUnits: '1' };
    expect(rate({ model: 'package', packageSize: '2', packagePrice: '3', ...common }, { quantity: '41' }).amount).toBe('6'); // 5 − 1 = 4 → 2 packages × 3
    expect(rate({ model: 'graduated', tiers: [{ upTo: '2', unitPrice: '1' }, { upTo: null, unitPrice: '0.5' }], ...common }, { quantity: '41' }).amount).toBe('3'); // 4: 2 + 1
    expect(rate({ model: 'volume', tiers: [{ upTo: '2', unitPrice: '1' }, { upTo: null, unitPrice: '0.5' }], ...common }, { quantity: '41' }).amount).toBe('2'); // 4 × 0.5
  });

  it.each([['-1'], ['abc'], [''], ['1,5'], ['0x10'], ['1e999']])('refuses quantity %j', (q) => {
    expect(() => rate({ model: 'per_unit', unitPrice: '1' }, { quantity: q })).toThrow(expect.objectContaining({ code: 'RATE_INPUT_INVALID', issues: [expect.objectContaining({ path: 'quantity' })] }));
  });

  // OpenMeter's unit config table test, openmeter/billing/rating/service/rate/unit_test.go.
  it.each([
    // [name, transform, unit price, quantity, billed quantity, amount]
    ['divide+ceil: 1,500,001 tokens ÷ 1e6 → 2 at $10 = $20', { divideBy: '1000000', round: 'up' }, '10', '1500001', '2', '20'],
    ['multiply, no rounding: 100 calls × 1.2 margin = 120 at $1 = $120', { multiplyBy: '1.2', round: 'none' }, '1', '100', '120', '120'],
    ['divide+floor: 1999 tokens ÷ 1000 → 1 at $5 = $5', { divideBy: '1000', round: 'down' }, '5', '1999', '1', '5'],
  ] as const)("OpenMeter's unit config, %s", (_name, t, unitPrice, q, billed, amount) => {
    const r = rate({ model: 'per_unit', unitPrice, transform: t }, { quantity: q });
    expect(r).toMatchObject({ billedQuantity: billed, amount });
  });

  it.each([
    // [transform, quantity, billed]
    [{ divideBy: '1000', round: 'half_up' }, '1500', '2'], // 1.5: a tie goes up
    [{ divideBy: '1000', round: 'half_up' }, '1499.999', '1'],
    [{ divideBy: '3', round: 'half_up' }, '5', '2'], // 1.666…, exactly, never a rounded float
    [{ divideBy: '1000', round: 'none' }, '1999', '1.999'],
    [{ divideBy: '1024', round: 'none' }, '1536', '1.5'], // bytes → KiB
    [{ divideBy: '0.5', round: 'none' }, '3.3', '6.6'],
    [{ multiplyBy: '1.2', round: 'up' }, '101', '122'], // 121.2 → 122
    [{ multiplyBy: '1.2', round: 'down' }, '101', '121'],
    [{ multiplyBy: '1.25', round: 'half_up' }, '2', '3'], // 2.5 → 3
    [{ multiplyBy: '0.001', round: 'none' }, '1e20', '100000000000000000'],
  ] as const)('%j: %s → %s', (t, q, billed) => {
    expect(rate({ model: 'per_unit', unitPrice: '1', transform: t }, { quantity: q }).billedQuantity).toBe(billed);
  });

  it('says what it did in a zero-amount row', () => {
    expect(rate({ model: 'per_unit', unitPrice: '5', transform: { divideBy: '1000', round: 'none' } }, { quantity: '1999' }).breakdown).toEqual([
      { description: 'Quantity 1999 ÷ 1000, not rounded: 1.999', units: '1.999', amount: '0' },
      { description: '1.999 × 5', units: '1.999', unitPrice: '5', amount: '9.995' }, // 9.995 → 10.00 on the invoice (rounded once)
    ]);
    expect(roundMoney('9.995', 'USD')).toBe('10.00');
    expect(rate({ model: 'per_unit', unitPrice: '1', transform: { multiplyBy: '1.2', round: 'half_up' } }, { quantity: '101' }).breakdown[0]?.description).toBe('Quantity 101 × 1.2, rounded half up to a whole number: 121');
  });

  it('never decreases as the quantity grows, and rounds to a whole number unless round is none', () => {
    fc.assert(
      fc.property(transform, quantity, quantity, (t, a, b) => {
        const [lo, hi] = new D(a).lte(b) ? [a, b] : [b, a];
        const p: Price = { model: 'per_unit', unitPrice: '1', transform: t };
        const qLo = new D(rate(p, { quantity: lo }).billedQuantity);
        expect(qLo.lte(rate(p, { quantity: hi }).billedQuantity)).toBe(true);
        if (t.round !== 'none') expect(qLo.isInteger()).toBe(true);
      }),
    );
  });
});
