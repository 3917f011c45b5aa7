import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { D } from './decimal.ts';
import { rate } from './index.ts';
import { decimal, price as priceArb, quantity } from './test-arbitraries.ts';
import type { Price } from './types.ts';

const pkg = (packageSize: string, packagePrice: string, round?: 'up' | 'down', extra: Partial<Price> = {}): Price =>
  ({ model: 'package', packageSize, packagePrice, ...(round ? { round } : {}), ...extra }) as Price;

describe('package', () => {
  // Stripe, https://stripe.com/docs/billing/subscriptions/quantity-transformation: "charges $10 for
  // every 5 users (or portion thereof)": 1, 3, 5 users → $10; 6, 7 users → $20.
  it.each([
    ['1', '10'],
    ['3', '10'],
    ['5', '10'],
    ['6', '20'],
    ['7', '20'],
  ])("Stripe's 10 USD per 5 users: %s users cost %s", (users, amount) => {
    expect(rate(pkg('5', '10'), { quantity: users }).amount).toBe(amount);
  });

  it.each([
    // [round, quantity, packages, amount]
    [undefined, '0', '0', '0'],
    [undefined, '100', '1', '5'], // exactly one package
    [undefined, '101', '2', '10'], // one above: a partial package is billed in full
    [undefined, '0.5', '1', '5'], // fractional
    [undefined, '250', '3', '15'],
    [undefined, '1e20', '1000000000000000000', '5000000000000000000'],
    ['down', '99', '0', '0'], // only complete packages
    ['down', '100', '1', '5'],
    ['down', '250', '2', '10'],
    ['down', '100.5', '1', '5'],
  ] as const)('round %s: %s units → %s packages, %s', (round, q, packages, amount) => {
    const r = rate(pkg('100', '5', round), { quantity: q });
    expect(r.amount).toBe(amount);
    expect(r.billedQuantity).toBe(new D(q).toFixed());
    expect(r.breakdown).toHaveLength(1);
    expect(r.breakdown[0]).toMatchObject({ units: packages, unitPrice: '5', amount });
  });

  it('explains the package count', () => {
    expect(rate(pkg('100', '5'), { quantity: '250' }).breakdown[0]?.description).toBe('250 units in packages of 100 (a partial package is billed in full): 3 × 5');
  });

  it('packages the quantity left after included units', () => {
    expect(rate(pkg('100', '5', undefined, { includedUnits: '100' }), { quantity: '250' })).toMatchObject({ amount: '10', billedQuantity: '150' });
  });

  const size = decimal(1000, 2).filter((s) => s !== '0');

  it('splitting a quantity never costs less when partial packages round up (and never more when they round down)', () => {
    fc.assert(
      fc.property(size, priceArb, quantity, quantity, (s, p, a, b) => {
        for (const round of ['up', 'down'] as const) {
          const whole = new D(rate(pkg(s, p, round), { quantity: new D(a).plus(b).toFixed() }).amount);
          const parts = new D(rate(pkg(s, p, round), { quantity: a }).amount).plus(rate(pkg(s, p, round), { quantity: b }).amount);
          expect(round === 'up' ? whole.lte(parts) : whole.gte(parts)).toBe(true);
        }
      }),
    );
  });

  it('splitting after whole packages is exact: rate(k × size + b) = rate(k × size) + rate(b)', () => {
    fc.assert(
      fc.property(size, priceArb, fc.integer({ min: 0, max: 1000 }), quantity, fc.constantFrom('up' as const, 'down' as const), (s, p, k, b, round) => {
        const a = new D(s).times(k);
        const whole = new D(rate(pkg(s, p, round), { quantity: a.plus(b).toFixed() }).amount);
        const parts = new D(rate(pkg(s, p, round), { quantity: a.toFixed() }).amount).plus(rate(pkg(s, p, round), { quantity: b }).amount);
        expect(whole.eq(parts)).toBe(true);
      }),
    );
  });
});
