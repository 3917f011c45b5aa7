import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { D } from './decimal.ts';
import { rate } from './index.ts';
import { quantity, tiers as tiersArb } from './test-arbitraries.ts';
import type { Price, Tier } from './types.ts';

const volume = (tiers: Tier[], extra: Partial<Price> = {}): Price => ({ model: 'volume', tiers, ...extra }) as Price;

// Stripe's volume-based example, quoted from https://docs.stripe.com/subscriptions/pricing-models/tiered-pricing
// (fonts 1-5 at 7 USD, 6-10 at 6.50 USD, 11+ at 6 USD; "Quantity and usage at end of the period" table).
const typographic = volume([
  { upTo: '5', unitPrice: '7' },
  { upTo: '10', unitPrice: '6.5' },
  { upTo: null, unitPrice: '6' },
]);

const api = volume([
  { upTo: '1000', unitPrice: '0.01', flatFee: '2' },
  { upTo: '10000', unitPrice: '0.008', flatFee: '5' },
  { upTo: null, unitPrice: '0.005' },
]);

describe('volume', () => {
  it.each([
    ['1', '7'],
    ['5', '35'],
    ['6', '39'],
    ['20', '120'],
    ['25', '150'],
  ])("Stripe's Typographic example: %s fonts cost %s USD", (q, amount) => {
    expect(rate(typographic, { quantity: q }).amount).toBe(amount);
  });

  it.each([
    // [quantity, amount, tier]
    ['0', '2', '1–1000'], // 0 falls in tier 1: its flat fee with 0 units (see volume.ts)
    ['1000', '12', '1–1000'], // on the boundary: upTo is inclusive
    ['1001', '13.008', '1001–10000'], // one above: every unit at tier 2's price, plus its flat fee
    ['1000.5', '13.004', '1001–10000'], // fractional
    ['10000', '85', '1001–10000'],
    ['10001', '50.005', '10001–∞'], // the total drops when crossing into a cheaper tier
    ['1e20', '500000000000000000', '10001–∞'], // very large
  ])('%s units cost %s in tier %s', (q, amount, tier) => {
    const r = rate(api, { quantity: q });
    expect(r.amount).toBe(amount);
    expect(r.breakdown).toHaveLength(1);
    expect(r.breakdown[0]?.tier).toBe(tier);
  });

  it('explains the amount with the selected tier', () => {
    expect(rate(api, { quantity: '1500' }).breakdown).toEqual([
      { description: 'Tier 2 (1001–10000) prices all 1500 units: 1500 × 0.008 + flat fee 5', units: '1500', unitPrice: '0.008', flatFee: '5', amount: '17', tier: '1001–10000' },
    ]);
  });

  it('a leading { upTo: 0 } tier bills nothing at zero usage', () => {
    const p = volume([{ upTo: '0', unitPrice: '0' }, ...(api.model === 'volume' ? api.tiers : [])]);
    expect(rate(p, { quantity: '0' }).amount).toBe('0');
    expect(rate(p, { quantity: '1' }).amount).toBe('2.01');
  });

  it('selects the tier by the quantity left after included units', () => {
    expect(rate(volume(api.model === 'volume' ? api.tiers : [], { includedUnits: '600' }), { quantity: '1500' })).toMatchObject({ amount: '11', billedQuantity: '900' });
  });

  it("total = unit price of the quantity's tier × quantity + that tier's flat fee", () => {
    fc.assert(
      fc.property(tiersArb, quantity, (tiers, q) => {
        const tier = tiers.find((t) => t.upTo === null || new D(q).lte(t.upTo)) as Tier;
        const expected = new D(tier.unitPrice).times(q).plus(tier.flatFee ?? 0);
        expect(new D(rate(volume(tiers), { quantity: q }).amount).eq(expected)).toBe(true);
      }),
    );
  });
});
