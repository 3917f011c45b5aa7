import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { D } from './decimal.ts';
import { rate } from './index.ts';
import { eventValues, percentagePrice } from './test-arbitraries.ts';
import type { PercentagePrice } from './types.ts';

const pct = (p: Omit<PercentagePrice, 'model'>): PercentagePrice => ({ model: 'percentage', ...p });
const rateValues = (p: PercentagePrice, values: string[]) => rate(p, { quantity: '0', values });

describe('percentage', () => {
  // Lago's documented example, https://getlago.com/docs/guide/plans/charges/charge-models/percentage:
  // 1.2% and $0.10 per transaction, the first 3 events or $500 free. Transactions $200, $100, $100
  // are free; the 4th ($50, running total $450) is charged "$0.10 x 1 event + 1.2% of $50 = $0.70".
  it("Lago's example: the 4th transaction costs 0.70", () => {
    const r = rateValues(pct({ rate: '1.2', fixedFeePerEvent: '0.10', freeEvents: 3, freeAmount: '500' }), ['200', '100', '100', '50']);
    expect(r).toEqual({
      amount: '0.7',
      billedQuantity: '50',
      breakdown: [
        { description: 'Free units (first 3 events or first 500 of amount): 3 events free, 400 of the amount free of the rate', units: '400', amount: '0' },
        { description: '1.2% of 50 (1 charged event)', units: '50', unitPrice: '0.012', amount: '0.6' },
        { description: 'Fixed fee 0.10 × 1 charged event', units: '1', unitPrice: '0.10', amount: '0.1' },
      ],
    });
  });

  // Lago's own table test, lago-api spec/services/charges/charge_models/percentage_service_spec.rb:
  // 4 events with running totals 50, 150, 400, 800 (so 50, 100, 250, 400), rate 1.3%, fixed 2.0.
  const events = ['50', '100', '250', '400'];
  it.each([
    ['3 free events and 250 free', { freeEvents: 3, freeAmount: '250' }, '11.15'], // (800 − 250) × 1.3% + (4 − 2) × 2
    ['250 free only', { freeAmount: '250' }, '11.15'],
    ['3 free events only', { freeEvents: 3 }, '7.2'], // (800 − 400) × 1.3% + (4 − 3) × 2
    ['no free units', {}, '18.4'], // 800 × 1.3% + 4 × 2
    ['500 free, more than the 3 free events use', { freeEvents: 3, freeAmount: '500' }, '7.2'],
  ])("Lago's spec: %s → %s", (_name, free, amount) => {
    expect(rateValues(pct({ rate: '1.3', fixedFeePerEvent: '2.0', ...free }), events).amount).toBe(amount);
  });

  it("Lago's spec: more free events than events → 0", () => {
    expect(rateValues(pct({ rate: '1.3', fixedFeePerEvent: '2.0', freeEvents: 5 }), ['50', '100', '250', '0']).amount).toBe('0');
  });

  it("Lago's spec: rate 0 leaves the fixed fees", () => {
    expect(rateValues(pct({ rate: '0', fixedFeePerEvent: '2.0' }), events).amount).toBe('8');
  });

  it('charges the fixed fee on charged events even when their amounts are 0 (Lago skips it when the sum is 0; see percentage.ts)', () => {
    expect(rateValues(pct({ rate: '1.3', fixedFeePerEvent: '2.0', freeEvents: 3, freeAmount: '250' }), ['0', '0', '0', '0']).amount).toBe('2');
  });

  it('card fees: 2.9% + 0.30 per transaction', () => {
    expect(rateValues(pct({ rate: '2.9', fixedFeePerEvent: '0.30' }), ['100', '20.50']).amount).toBe('4.0945');
  });

  it('bounds each charged event: minimum raises, maximum caps, and the rows say by how much', () => {
    const r = rateValues(pct({ rate: '1', fixedFeePerEvent: '0.1', perEventMin: '0.5', perEventMax: '2' }), ['10', '100', '500']);
    // fees 0.2 → 0.5, 1.1, 5.1 → 2
    expect(r.amount).toBe('3.6');
    expect(r.breakdown).toEqual([
      { description: '1% of 610 (3 charged events)', units: '610', unitPrice: '0.01', amount: '6.1' },
      { description: 'Fixed fee 0.1 × 3 charged events', units: '3', unitPrice: '0.1', amount: '0.3' },
      { description: 'Per-transaction minimum 0.5: 1 event raised to it', units: '1', amount: '0.3' },
      { description: 'Per-transaction maximum 2: 1 event capped at it', units: '1', amount: '-3.1' },
    ]);
  });

  it('free events are not raised to the minimum; the event that uses up the free amount is', () => {
    expect(rateValues(pct({ rate: '1', fixedFeePerEvent: '0.1', freeEvents: 1, perEventMin: '0.5' }), ['10', '10']).amount).toBe('0.5');
    // 100 free: the first event reaches it exactly, so it is charged (0 × 1% + 0) and raised to 0.5
    expect(rateValues(pct({ rate: '1', freeAmount: '100', perEventMin: '0.5' }), ['100']).amount).toBe('0.5');
    expect(rateValues(pct({ rate: '1', freeAmount: '100', perEventMin: '0.5' }), ['99.99']).amount).toBe('0');
  });

  it('splits the event that crosses the free amount', () => {
    const r = rateValues(pct({ rate: '10', freeAmount: '150' }), ['100', '100', '100']);
    expect(r).toMatchObject({ amount: '15', billedQuantity: '150' }); // 50 of the 2nd event + the 3rd
  });

  it.each([
    ['no events', [], '0'],
    ['fractional amounts', ['0.015', '0.005'], '0.0002'],
    ['a very large amount', ['1e20'], '1000000000000000000'],
  ])('%s', (_name, values, amount) => {
    expect(rateValues(pct({ rate: '1' }), values).amount).toBe(amount);
  });

  it('without per-event values, applies the rate to the quantity less the free amount', () => {
    const r = rate(pct({ rate: '2.9', freeAmount: '100' }), { quantity: '1000' });
    expect(r).toMatchObject({ amount: '26.1', billedQuantity: '900' });
    expect(rate(pct({ rate: '2.9', freeAmount: '100' }), { quantity: '40' }).amount).toBe('0');
  });

  it('needs the per-event values when the price has per-event terms', () => {
    expect(() => rate(pct({ rate: '1', fixedFeePerEvent: '0.3', perEventMax: '5' }), { quantity: '1000' })).toThrow(
      expect.objectContaining({ code: 'RATE_INPUT_INVALID', issues: [{ path: 'values', message: 'required because the price has fixedFeePerEvent, perEventMax' }] }),
    );
  });

  it('refuses negative event amounts', () => {
    expect(() => rateValues(pct({ rate: '1' }), ['10', '-5'])).toThrow(expect.objectContaining({ code: 'RATE_INPUT_INVALID', issues: [expect.objectContaining({ path: 'values[1]' })] }));
  });

  it('free units never increase the amount', () => {
    fc.assert(
      fc.property(percentagePrice, eventValues, (p, values) => {
        const { freeEvents: _e, freeAmount: _a, ...noFree } = p;
        expect(new D(rateValues(p, values).amount).lte(rateValues(noFree, values).amount)).toBe(true);
      }),
    );
  });

  it('without free units or bounds, is additive over events: rate(a ++ b) = rate(a) + rate(b)', () => {
    fc.assert(
      fc.property(percentagePrice, eventValues, eventValues, (p, a, b) => {
        const plain = pct({ rate: p.rate, ...(p.fixedFeePerEvent !== undefined ? { fixedFeePerEvent: p.fixedFeePerEvent } : {}) });
        const whole = new D(rateValues(plain, [...a, ...b]).amount);
        expect(whole.eq(new D(rateValues(plain, a).amount).plus(rateValues(plain, b).amount))).toBe(true);
      }),
    );
  });

  it('every charged event pays within [perEventMin, perEventMax]', () => {
    fc.assert(
      fc.property(percentagePrice, eventValues, (p, values) => {
        const r = rateValues({ ...p, freeEvents: 0, freeAmount: '0' }, values);
        const n = values.length;
        if (p.perEventMin !== undefined) expect(new D(r.amount).gte(new D(p.perEventMin).times(n))).toBe(true);
        if (p.perEventMax !== undefined) expect(new D(r.amount).lte(new D(p.perEventMax).times(n))).toBe(true);
      }),
    );
  });
});
