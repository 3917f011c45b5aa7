import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { D } from './decimal.ts';
import { rate, roundMoney } from './index.ts';
import { decimal, quantity, quantityPrice } from './test-arbitraries.ts';
import type { Price } from './types.ts';

describe('minimum and maximum spend', () => {
  // OpenMeter's table test openmeter/billing/rating/service/rate/unit_test.go: a unit price of 10.
  it("OpenMeter's \"unit price, no usage, min spend set\": minimum 100 at zero usage bills 100.00", () => {
    const r = rate({ model: 'per_unit', unitPrice: '10', minimumAmount: '100' }, { quantity: '0' });
    // 0 × 10 = 0, raised to the minimum: + 100
    expect(r).toEqual({
      amount: '100',
      billedQuantity: '0',
      breakdown: [
        { description: '0 × 10', units: '0', unitPrice: '10', amount: '0' },
        { description: 'Minimum spend 100: the charge came to 0, raised to the minimum', units: '1', amount: '100' },
      ],
    });
  });

  it("OpenMeter's \"max spend set, but not hit\": 10 units × 10 = 100.00, no cap row", () => {
    const r = rate({ model: 'per_unit', unitPrice: '10', maximumAmount: '100' }, { quantity: '10' });
    expect(r.amount).toBe('100');
    expect(r.breakdown).toHaveLength(1);
  });

  it("OpenMeter's \"max spend set and hit\": 7 + 5 units × 10 = 120, capped at 100.00 (a −20 row)", () => {
    const r = rate({ model: 'per_unit', unitPrice: '10', maximumAmount: '100' }, { quantity: '12' });
    expect(r.amount).toBe('100');
    expect(r.breakdown.at(-1)).toEqual({ description: 'Maximum spend 100: the charge came to 120, capped at the maximum', units: '1', amount: '-20' });
  });

  // OpenMeter's dynamic_test.go: multiplier 1.33333 with a maximum of 100; 70 + 50 = 120 of usage.
  it("OpenMeter's dynamic price, max spend hit: 120 × 1.33333 = 159.9996, capped at 100.00", () => {
    const r = rate({ model: 'per_unit', unitPrice: '1.33333', maximumAmount: '100' }, { quantity: '120' });
    // 120 × 1.33333 = 159.9996; cap row 100 − 159.9996 = −59.9996
    expect(r.amount).toBe('100');
    expect(r.breakdown.map((row) => row.amount)).toEqual(['159.9996', '-59.9996']);
  });

  it('a minimum raises a graduated charge and the rows still add up', () => {
    const p: Price = { model: 'graduated', tiers: [{ upTo: '1000', unitPrice: '0.01' }, { upTo: null, unitPrice: '0.005' }], minimumAmount: '25' };
    // 1500: 10 + 500 × 0.005 = 12.5; raised by 12.5 to 25.00
    const r = rate(p, { quantity: '1500' });
    expect(r.amount).toBe('25');
    expect(r.breakdown.at(-1)).toMatchObject({ amount: '12.5' });
    // 5000: 10 + 4000 × 0.005 = 30 ≥ 25: no minimum row
    expect(rate(p, { quantity: '5000' }).breakdown).toHaveLength(2);
  });

  it('bounds a percentage charge after its per-event bounds, and a dimensional price as a whole', () => {
    // 2.9% + 0.30 of 100 and 20.50 = 3.20 + 0.8945 = 4.0945, capped at 4 → 4.00
    expect(rate({ model: 'percentage', rate: '2.9', fixedFeePerEvent: '0.30', maximumAmount: '4' }, { quantity: '0', values: ['100', '20.50'] }).amount).toBe('4');
    const dim: Price = { model: 'dimensional', dimension: 'region', prices: { eu: { model: 'per_unit', unitPrice: '2', minimumAmount: '5' } }, default: { model: 'per_unit', unitPrice: '1' }, maximumAmount: '50' };
    // eu: 1 × 2 = 2 → its own minimum 5; us: 60 × 1 = 60; 65 capped at 50
    const r = rate(dim, { quantity: '0', byDimension: { eu: { quantity: '1' }, us: { quantity: '60' } } });
    expect(r.amount).toBe('50');
    expect(roundMoney(r.amount, 'EUR')).toBe('50.00');
  });

  it('the amount is always within [minimumAmount, maximumAmount], and a bounded monotone price stays monotone', () => {
    fc.assert(
      fc.property(quantityPrice, decimal(500, 2), decimal(500, 2), quantity, quantity, (p, x, y, a, b) => {
        const [min, max] = new D(x).lte(y) ? [x, y] : [y, x];
        const bounded = { ...p, minimumAmount: min, maximumAmount: max } as Price;
        const [lo, hi] = new D(a).lte(b) ? [a, b] : [b, a];
        const at = (q: string) => new D(rate(bounded, { quantity: q }).amount);
        expect(at(lo).gte(min) && at(lo).lte(max)).toBe(true);
        if (p.model !== 'volume') expect(at(lo).lte(at(hi))).toBe(true); // volume alone may drop as the quantity grows
      }),
    );
  });
});
