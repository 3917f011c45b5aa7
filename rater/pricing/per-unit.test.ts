import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { D } from './decimal.ts';
import { rate } from './index.ts';
import { decimal, price as priceArb, quantity } from './test-arbitraries.ts';
import type { Price } from './types.ts';

const perUnit = (unitPrice: string): Price => ({ model: 'per_unit', unitPrice });

describe('per_unit', () => {
  it.each([
    // [unitPrice, quantity, amount]
    ['0.01', '0', '0'],
    ['0.01', '1', '0.01'],
    ['0.01', '1000', '10'],
    ['0.0001234', '3.5', '0.0004319'], // fractional quantity (GB-hours), sub-cent price: exact, unrounded
    ['0.000001', '1e20', '100000000000000'], // very large quantity
    ['2.5', '100000000000000000000', '250000000000000000000'],
    ['0', '123', '0'],
  ])('%s × %s = %s', (unitPrice, q, amount) => {
    const r = rate(perUnit(unitPrice), { quantity: q });
    expect(r.amount).toBe(amount);
    expect(r.breakdown).toEqual([{ description: `${new D(q).toFixed()} × ${unitPrice}`, units: new D(q).toFixed(), unitPrice, amount }]);
  });

  it('bills the quantity left after included units', () => {
    const r = rate({ model: 'per_unit', unitPrice: '0.5', includedUnits: '100' }, { quantity: '250' });
    expect(r).toMatchObject({ amount: '75', billedQuantity: '150' });
    expect(r.breakdown[0]).toMatchObject({ units: '100', unitPrice: '0', amount: '0' });
  });

  it('is linear: rate(a + b) = rate(a) + rate(b)', () => {
    fc.assert(
      fc.property(priceArb, quantity, quantity, (unitPrice, a, b) => {
        const p = perUnit(unitPrice);
        const whole = new D(rate(p, { quantity: new D(a).plus(b).toFixed() }).amount);
        const parts = new D(rate(p, { quantity: a }).amount).plus(rate(p, { quantity: b }).amount);
        expect(whole.eq(parts)).toBe(true);
      }),
    );
  });

  it('amount = unitPrice × quantity for any quantity', () => {
    fc.assert(
      fc.property(priceArb, decimal(10 ** 9, 6), (unitPrice, q) => {
        expect(new D(rate(perUnit(unitPrice), { quantity: q }).amount).eq(new D(unitPrice).times(q))).toBe(true);
      }),
    );
  });
});
