import { describe, expect, it } from 'vitest';
import { rate } from './index.ts';
import type { Price } from './types.ts';

const byModel: Price = {
  model: 'dimensional',
  dimension: 'model',
  prices: {
    'gpt-4o': { model: 'per_unit', unitPrice: '0.0025', includedUnits: '1000' },
    'gpt-4o-mini': {
      model: 'graduated',
      tiers: [
        { upTo: '1000000', unitPrice: '0.00015' },
        { upTo: null, unitPrice: '0.0001', flatFee: '1' },
      ],
    },
    fees: { model: 'percentage', rate: '2', fixedFeePerEvent: '0.25' },
  },
  default: { model: 'per_unit', unitPrice: '0.001' },
};

describe('dimensional', () => {
  it('rates each value with its own price and tags every row with the value', () => {
    const r = rate(byModel, {
      quantity: '0',
      byDimension: {
        'gpt-4o-mini': { quantity: '1500000' },
        'gpt-4o': { quantity: '5000' },
        fees: { quantity: '0', values: ['10', '40'] },
      },
    });
    // gpt-4o: (5000 − 1000) × 0.0025 = 10; mini: 150 + 50 + 1 = 201; fees: 2% × 50 + 2 × 0.25 = 1.5
    expect(r.amount).toBe('212.5');
    expect(r.billedQuantity).toBe('1504050'); // 4000 + 1 500 000 + 50
    expect(r.breakdown.map((row) => [row.dimensionValue, row.amount])).toEqual([
      ['fees', '1'],
      ['fees', '0.5'],
      ['gpt-4o', '0'],
      ['gpt-4o', '10'],
      ['gpt-4o-mini', '150'],
      ['gpt-4o-mini', '51'],
    ]);
    expect(r.breakdown[4]).toEqual({
      description: 'model=gpt-4o-mini: Tier 1 (1–1000000): 1000000 × 0.00015',
      units: '1000000',
      unitPrice: '0.00015',
      amount: '150',
      tier: '1–1000000',
      dimensionValue: 'gpt-4o-mini',
    });
  });

  it('prices values that are not listed with the default, and says so', () => {
    const r = rate(byModel, { quantity: '0', byDimension: { 'o3-pro': { quantity: '2000' } } });
    expect(r.amount).toBe('2');
    expect(r.breakdown).toEqual([{ description: 'model=o3-pro (default price): 2000 × 0.001', units: '2000', unitPrice: '0.001', amount: '2', dimensionValue: 'o3-pro' }]);
  });

  it('throws a configuration error naming every value with neither a price nor a default', () => {
    const { default: _d, ...noDefault } = byModel as Extract<Price, { model: 'dimensional' }>;
    expect(() => rate(noDefault, { quantity: '0', byDimension: { 'gpt-4o': { quantity: '1' }, zeta: { quantity: '1' }, alpha: { quantity: '2' } } })).toThrow(
      expect.objectContaining({
        code: 'PRICE_DIMENSION_UNPRICED',
        issues: [
          { path: 'model=alpha', message: 'add it to prices, or add a default price' },
          { path: 'model=zeta', message: 'add it to prices, or add a default price' },
        ],
      }),
    );
  });

  it('does not take inherited object keys for prices', () => {
    const { default: _d, ...noDefault } = byModel as Extract<Price, { model: 'dimensional' }>;
    expect(() => rate(noDefault, { quantity: '0', byDimension: { constructor: { quantity: '1' }, toString: { quantity: '1' } } })).toThrow(expect.objectContaining({ code: 'PRICE_DIMENSION_UNPRICED' }));
  });

  it('no usage is 0 with no rows; listed values without usage add nothing (not even flat fees)', () => {
    expect(rate(byModel, { quantity: '0', byDimension: {} })).toEqual({ amount: '0', billedQuantity: '0', breakdown: [] });
  });

  it('needs the usage per value', () => {
    expect(() => rate(byModel, { quantity: '10' })).toThrow(expect.objectContaining({ code: 'RATE_INPUT_INVALID' }));
  });

  it('checks each value’s input', () => {
    expect(() => rate(byModel, { quantity: '0', byDimension: { 'gpt-4o': { quantity: '-3' } } })).toThrow(
      expect.objectContaining({ code: 'RATE_INPUT_INVALID', issues: [{ path: 'byDimension.gpt-4o.quantity', message: 'must not be negative (got -3)' }] }),
    );
  });
});
