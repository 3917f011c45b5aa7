import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { D, type Dec } from './decimal.ts';
import { parsePrice, rate, roundMoney } from './index.ts';
import { percentageTiers, quantity } from './test-arbitraries.ts';
import type { PercentageTier, Price } from './types.ts';

const gp = (tiers: PercentageTier[], extra: Partial<Price> = {}): Price => ({ model: 'graduated_percentage', tiers, ...extra }) as Price;

// Lago's documented example, https://getlago.com/docs/guide/plans/charges/charge-models/graduated-percentage:
// tier 1 0–1,000 at 1% + $200, tier 2 1,001–10,000 at 2% + $300, tier 3 above at 3% + $400.
// Transactions of $500, $550 and $4,000 cost $205, $306 and $80 (each the increase of the total).
const lagoDocs = gp([
  { upTo: '1000', rate: '1', flatFee: '200' },
  { upTo: '10000', rate: '2', flatFee: '300' },
  { upTo: null, rate: '3', flatFee: '400' },
]);

describe('graduated_percentage', () => {
  it.each([
    // [running total, amount]
    ['500', '205'], // 500 × 1% + 200 = 5 + 200 = 205.00 (1st transaction: $205.00)
    ['1050', '511'], // 1000 × 1% + 200 + 50 × 2% + 300 = 10 + 200 + 1 + 300 = 511.00 (2nd: 511 − 205 = $306.00)
    ['5050', '591'], // 10 + 200 + 4050 × 2% + 300 = 10 + 200 + 81 + 300 = 591.00 (3rd: 591 − 511 = $80.00; Lago's v2 page: 5,050 USD → 591 USD)
  ])("Lago's documented example: a running total of %s costs %s", (total, amount) => {
    const r = rate(lagoDocs, { quantity: total });
    expect(r.amount).toBe(amount);
    expect(roundMoney(r.amount, 'USD')).toBe(`${amount}.00`);
  });

  it("Lago's documented example: each transaction costs the increase of the total (205.00, 306.00, 80.00)", () => {
    const totals = ['0', '500', '1050', '5050'].map((q) => (q === '0' ? new D(0) : new D(rate(lagoDocs, { quantity: q }).amount)));
    expect(totals.slice(1).map((t, i) => t.minus(totals[i] as Dec).toFixed(2))).toEqual(['205.00', '306.00', '80.00']);
  });

  it('explains each tier: the amount within it, the rate as a unit price, the flat fee', () => {
    expect(rate(lagoDocs, { quantity: '1050' }).breakdown).toEqual([
      { description: 'Tier 1 (1–1000): 1% of 1000 + flat fee 200', units: '1000', unitPrice: '0.01', flatFee: '200', amount: '210', tier: '1–1000' },
      { description: 'Tier 2 (1001–10000): 2% of 50 + flat fee 300', units: '50', unitPrice: '0.02', flatFee: '300', amount: '301', tier: '1001–10000' },
    ]);
  });

  // Lago's own table test (lago-api spec/services/charges/charge_models/graduated_percentage_service_spec.rb),
  // ranges 0–10 at 1% + 200, 11–20 at 2% + 300, 21+ at 3% + 400, without the per-transaction
  // fixed_amount that model no longer has (Lago's NOTE comments, less "1 * fixed_amount").
  const lagoSpec = gp([
    { upTo: '10', rate: '1', flatFee: '200' },
    { upTo: '20', rate: '2', flatFee: '300' },
    { upTo: null, rate: '3', flatFee: '400' },
  ]);
  it.each([
    ['1', '200.01'], // 200 + 1 × 0.01
    ['10', '200.1'], // 200 + 10 × 0.01: the top bound stays in tier 1
    ['11', '500.12'], // 200 + 300 + 10 × 0.01 + 1 × 0.02
    ['12', '500.14'], // 200 + 300 + 10 × 0.01 + 2 × 0.02
    ['21', '900.33'], // 200 + 300 + 400 + 10 × 0.01 + 10 × 0.02 + 1 × 0.03
  ])("Lago's spec: an amount of %s costs %s", (total, amount) => {
    expect(rate(lagoSpec, { quantity: total }).amount).toBe(amount);
  });

  it("bills the first tier's flat fee at 0 (as Meterline's graduated does; Lago bills 0), unless a free { upTo: 0 } tier leads", () => {
    expect(rate(lagoSpec, { quantity: '0' }).amount).toBe('200');
    const freeAtZero = gp([{ upTo: '0', rate: '0' }, ...(lagoSpec as { tiers: PercentageTier[] }).tiers]);
    expect(rate(freeAtZero, { quantity: '0' }).amount).toBe('0');
    expect(rate(freeAtZero, { quantity: '1' }).amount).toBe('200.01');
  });

  it('takes the sum of per-event amounts when they are given', () => {
    expect(rate(lagoDocs, { quantity: '0', values: ['500', '550', '4000'] }).amount).toBe('591');
  });

  it('stays exact with fractional amounts and rates: 1234.56 at 2.9% up to 1000, then 1.75%', () => {
    const p = gp([{ upTo: '1000', rate: '2.9' }, { upTo: null, rate: '1.75', flatFee: '0.30' }]);
    // 1000 × 0.029 + 234.56 × 0.0175 + 0.30 = 29 + 4.1048 + 0.30 = 33.4048 → 33.40
    expect(rate(p, { quantity: '1234.56' }).amount).toBe('33.4048');
  });

  it('parses from JSON with the field and the reason for each error', () => {
    expect(parsePrice({ model: 'graduated_percentage', tiers: [{ upTo: 1000, rate: '1', flatFee: '200' }, { upTo: null, rate: '2' }] })).toEqual({
      model: 'graduated_percentage',
      tiers: [
        { upTo: '1000', rate: '1', flatFee: '200' },
        { upTo: null, rate: '2' },
      ],
    });
  });

  it('never decreases as the amount grows', () => {
    fc.assert(
      fc.property(percentageTiers, quantity, quantity, (tiers, a, b) => {
        const [lo, hi] = new D(a).lte(b) ? [a, b] : [b, a];
        const p = gp(tiers);
        expect(new D(rate(p, { quantity: lo }).amount).lte(rate(p, { quantity: hi }).amount)).toBe(true);
      }),
    );
  });

  it('with one tier, is the rate of the amount plus the flat fee', () => {
    fc.assert(
      fc.property(percentageTiers, quantity, (tiers, q) => {
        const only = { ...(tiers[0] as PercentageTier), upTo: null };
        const expected = new D(q).times(only.rate).div(100).plus(only.flatFee ?? 0);
        expect(new D(rate(gp([only]), { quantity: q }).amount).eq(expected)).toBe(true);
      }),
    );
  });
});
