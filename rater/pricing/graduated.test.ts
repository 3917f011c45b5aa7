import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { D } from './decimal.ts';
import { rate } from './index.ts';
import { quantity, tiers as tiersArb } from './test-arbitraries.ts';
import type { Price, Tier } from './types.ts';

const graduated = (tiers: Tier[], extra: Partial<Price> = {}): Price => ({ model: 'graduated', tiers, ...extra }) as Price;

// Stripe's tiered-pricing example (https://docs.stripe.com/subscriptions/pricing-models/tiered-pricing):
// fonts 1-5 at 7 USD, 6-10 at 6.50 USD, 11+ at 6 USD. The page states 5 fonts cost 35 USD under
// graduated pricing too ("the same charge as volume-based pricing"); the other totals apply its rule
// "the quantity is multiplied by the amount for each tier and the totals for each tier are summed".
const typographic = graduated([
  { upTo: '5', unitPrice: '7' },
  { upTo: '10', unitPrice: '6.5' },
  { upTo: null, unitPrice: '6' },
]);

// 1000 units at 0.01, then 0.008 with a 5.00 flat fee up to 10 000, then 0.005 with a 10.00 flat fee.
const api = graduated([
  { upTo: '1000', unitPrice: '0.01' },
  { upTo: '10000', unitPrice: '0.008', flatFee: '5' },
  { upTo: null, unitPrice: '0.005', flatFee: '10' },
]);

describe('graduated', () => {
  it.each([
    ['1', '7'],
    ['5', '35'], // quoted by Stripe
    ['6', '41.5'], // 5 × 7 + 1 × 6.50
    ['20', '127.5'], // 35 + 32.50 + 10 × 6
    ['25', '157.5'], // 35 + 32.50 + 15 × 6
  ])("Stripe's Typographic example: %s fonts cost %s USD", (q, amount) => {
    expect(rate(typographic, { quantity: q }).amount).toBe(amount);
  });

  it.each([
    // [quantity, amount, tiers reached]
    ['0', '0', 1], // tier 1 is reached at 0 with 0 units; it has no flat fee here
    ['999', '9.99', 1],
    ['1000', '10', 1], // exactly on the boundary: upTo is inclusive, tier 2 (and its flat fee) not reached
    ['1001', '15.008', 2], // one above: 1 unit in tier 2 plus its flat fee
    ['1000.5', '15.004', 2], // fractional: half a unit in tier 2
    ['10000', '87', 2], // 10 + 9000 × 0.008 + 5
    ['10001', '97.005', 3],
    ['15000', '122', 3], // 10 + 72 + 5 + 5000 × 0.005 + 10
    ['1e20', '500000000000000047', 3], // very large: 10 + 72 + 5 + (1e20 − 10 000) × 0.005 + 10
  ])('%s units cost %s across %i tier(s)', (q, amount, reached) => {
    const r = rate(api, { quantity: q });
    expect(r.amount).toBe(amount);
    expect(r.breakdown).toHaveLength(reached);
  });

  it('explains each tier: units, unit price, flat fee, amount and bounds', () => {
    expect(rate(api, { quantity: '1500' }).breakdown).toEqual([
      { description: 'Tier 1 (1–1000): 1000 × 0.01', units: '1000', unitPrice: '0.01', amount: '10', tier: '1–1000' },
      { description: 'Tier 2 (1001–10000): 500 × 0.008 + flat fee 5', units: '500', unitPrice: '0.008', flatFee: '5', amount: '9', tier: '1001–10000' },
    ]);
    expect(rate(api, { quantity: '20000' }).breakdown.map((r) => r.tier)).toEqual(['1–1000', '1001–10000', '10001–∞']);
  });

  it("bills the first tier's flat fee at quantity 0 (Stripe: flat amount for the entire tier)", () => {
    const withBase = graduated([
      { upTo: '1000', unitPrice: '0', flatFee: '20' },
      { upTo: null, unitPrice: '0.04' },
    ]);
    expect(rate(withBase, { quantity: '0' })).toEqual({
      amount: '20',
      billedQuantity: '0',
      breakdown: [{ description: 'Tier 1 (1–1000): 0 × 0 + flat fee 20', units: '0', unitPrice: '0', flatFee: '20', amount: '20', tier: '1–1000' }],
    });
    expect(rate(withBase, { quantity: '1000' }).amount).toBe('20');
    expect(rate(withBase, { quantity: '1001' }).amount).toBe('20.04');
  });

  it('a leading { upTo: 0 } tier bills nothing at zero usage', () => {
    const p = graduated([
      { upTo: '0', unitPrice: '0' },
      { upTo: '1000', unitPrice: '0', flatFee: '20' },
      { upTo: null, unitPrice: '0.04' },
    ]);
    expect(rate(p, { quantity: '0' }).amount).toBe('0');
    expect(rate(p, { quantity: '0' }).breakdown).toEqual([{ description: 'Tier 1 (0): 0 × 0', units: '0', unitPrice: '0', amount: '0', tier: '0' }]);
    expect(rate(p, { quantity: '1' }).amount).toBe('20');
  });

  it('labels fractional bounds as intervals', () => {
    const p = graduated([
      { upTo: '0.5', unitPrice: '1' },
      { upTo: null, unitPrice: '2' },
    ]);
    expect(rate(p, { quantity: '2' }).breakdown.map((r) => [r.tier, r.units, r.amount])).toEqual([
      ['(0, 0.5]', '0.5', '0.5'],
      ['(0.5, ∞)', '1.5', '3'],
    ]);
  });

  it('deducts included units before the tiers', () => {
    const r = rate(graduated(api.model === 'graduated' ? api.tiers : [], { includedUnits: '500' }), { quantity: '1500' });
    expect(r).toMatchObject({ amount: '10', billedQuantity: '1000' });
  });

  it('never decreases as the quantity grows', () => {
    fc.assert(
      fc.property(tiersArb, quantity, quantity, (tiers, a, b) => {
        const [lo, hi] = new D(a).lte(b) ? [a, b] : [b, a];
        const p = graduated(tiers);
        expect(new D(rate(p, { quantity: lo }).amount).lte(rate(p, { quantity: hi }).amount)).toBe(true);
      }),
    );
  });

  it('equals pricing each unit by the tier it falls in, plus the flat fee of every tier reached', () => {
    fc.assert(
      fc.property(tiersArb, fc.integer({ min: 0, max: 300 }), (tiers, q) => {
        const intTiers = tiers.map((t) => ({ ...t, upTo: t.upTo === null ? null : new D(t.upTo).ceil().toFixed() }));
        // keep bounds strictly ascending after ceil()
        const clean = intTiers.filter((t, i) => t.upTo === null || i === 0 || intTiers[i - 1]?.upTo === null || new D(t.upTo).gt(intTiers[i - 1]?.upTo as string));
        const tierOf = (unit: number) => clean.findIndex((t) => t.upTo === null || new D(unit).lte(t.upTo));
        let expected = new D(0);
        const reached = new Set<number>([0]);
        for (let unit = 1; unit <= q; unit++) {
          const i = tierOf(unit);
          reached.add(i);
          expected = expected.plus((clean[i] as Tier).unitPrice);
        }
        for (const i of reached) expected = expected.plus((clean[i] as Tier).flatFee ?? 0);
        expect(new D(rate(graduated(clean), { quantity: String(q) }).amount).eq(expected)).toBe(true);
      }),
    );
  });
});
