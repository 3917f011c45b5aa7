import { describe, expect, it } from 'vitest';
import { rate, roundMoney } from './index.ts';

// Dynamic / cost-plus pricing needs no model of its own: the meter sums the cost each event
// carries (a SUM meter on `data.cost`), and an existing model prices that sum. README.md,
// "Cost-plus and dynamic prices", shows the JSON.
describe('cost-plus and dynamic prices with the existing models', () => {
  // OpenMeter's dynamic price (openmeter/billing/rating/service/rate/dynamic_test.go, "usage present"):
  // multiplier 1.33333 on a usage of 10 bills 13.33. In Meterline, per_unit with unitPrice = multiplier.
  it("OpenMeter's dynamic price: 10 of cost × 1.33333 = 13.3333 → 13.33", () => {
    const r = rate({ model: 'per_unit', unitPrice: '1.33333' }, { quantity: '10' });
    expect(r.amount).toBe('13.3333');
    expect(roundMoney(r.amount, 'USD')).toBe('13.33');
  });

  // Lago's dynamic charge model bills the amount each event carries: per_unit at 1.
  it("Lago's dynamic charge: the events' own amounts, summed (12.34 + 0.66 = 13.00)", () => {
    expect(roundMoney(rate({ model: 'per_unit', unitPrice: '1' }, { quantity: '13.00' }).amount, 'USD')).toBe('13.00');
  });

  it('cost × (1 + 20% markup): per_unit at 1.2 on the summed cost (0.0123 + 0.5 + 2 = 2.5123 → 3.01476 → 3.01)', () => {
    const r = rate({ model: 'per_unit', unitPrice: '1.2' }, { quantity: '2.5123' });
    expect(r.amount).toBe('3.01476');
    expect(roundMoney(r.amount, 'USD')).toBe('3.01');
  });

  it('cost + a fixed fee per event: percentage at 100% plus fixedFeePerEvent (2.5123 + 3 × 0.10 = 2.8123 → 2.81)', () => {
    const r = rate({ model: 'percentage', rate: '100', fixedFeePerEvent: '0.10' }, { quantity: '0', values: ['0.0123', '0.5', '2'] });
    expect(r.amount).toBe('2.8123');
    expect(r.breakdown.map((row) => [row.description, row.amount])).toEqual([
      ['100% of 2.5123 (3 charged events)', '2.5123'],
      ['Fixed fee 0.10 × 3 charged events', '0.3'],
    ]);
  });

  it('the markup alone, when the cost is billed elsewhere: percentage at 20% (20% of 2.5123 = 0.50246 → 0.50)', () => {
    expect(rate({ model: 'percentage', rate: '20' }, { quantity: '2.5123' }).amount).toBe('0.50246');
  });

  it('a markup with a floor per charge: per_unit at 1.2 with a minimum spend of 5 (2.5123 × 1.2 = 3.01476 → raised to 5)', () => {
    expect(rate({ model: 'per_unit', unitPrice: '1.2', minimumAmount: '5' }, { quantity: '2.5123' }).amount).toBe('5');
  });
});
