import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { D } from './decimal.ts';
import { parseByDimensionText, parsePrice, parseValuesText, rate, type BreakdownRow, type Price, type RateResult } from './index.ts';
import { boundedPrice, eventValues, graduatedPercentagePrice, percentagePrice, quantity, quantityPrice } from './test-arbitraries.ts';

/** Guarantee 5: the rows explain the amount exactly, and each priced row explains itself. */
function expectExplained(r: RateResult) {
  const rowsTotal = r.breakdown.reduce((acc, row) => acc.plus(row.amount), new D(0));
  expect(rowsTotal.eq(r.amount)).toBe(true);
  for (const row of r.breakdown) {
    if (row.unitPrice !== undefined) expect(new D(row.units).times(row.unitPrice).plus(row.flatFee ?? 0).eq(row.amount)).toBe(true);
    else if (row.flatFee !== undefined) expect(new D(row.flatFee).eq(row.amount)).toBe(true);
  }
  expect(new D(r.amount).gte(0)).toBe(true);
  expect(new D(r.billedQuantity).gte(0)).toBe(true);
}

describe('rate', () => {
  it('every quantity model: the breakdown rows sum to the amount exactly', () => {
    fc.assert(
      fc.property(quantityPrice, quantity, (p, q) => {
        expectExplained(rate(p, { quantity: q }));
      }),
      { numRuns: 500 },
    );
  });

  it('percentage: the breakdown rows sum to the amount exactly', () => {
    fc.assert(
      fc.property(percentagePrice, eventValues, (p, values) => {
        expectExplained(rate(p, { quantity: '0', values }));
      }),
      { numRuns: 500 },
    );
  });

  it('graduated_percentage: the breakdown rows sum to the amount exactly', () => {
    fc.assert(
      fc.property(graduatedPercentagePrice, quantity, (p, q) => {
        expectExplained(rate(p, { quantity: q }));
      }),
      { numRuns: 300 },
    );
  });

  it('any model with a minimum and maximum spend: explained, non-negative, within the bounds', () => {
    fc.assert(
      fc.property(boundedPrice, quantity, eventValues, (p, q, values) => {
        const r = rate(p, { quantity: q, values });
        expectExplained(r);
        if (p.model !== 'dimensional' && p.minimumAmount !== undefined) expect(new D(r.amount).gte(p.minimumAmount)).toBe(true);
        if (p.model !== 'dimensional' && p.maximumAmount !== undefined) expect(new D(r.amount).lte(p.maximumAmount)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('dimensional: the amount is the sum over values, every row tagged with its value', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom('a', 'b', 'c', 'd'), fc.tuple(quantityPrice, quantity)), (entries) => {
        const prices = Object.fromEntries(Object.entries(entries).map(([k, [p]]) => [k, p]));
        const byDimension = Object.fromEntries(Object.entries(entries).map(([k, [, q]]) => [k, { quantity: q }]));
        const p: Price = { model: 'dimensional', dimension: 'x', prices, default: { model: 'per_unit', unitPrice: '1' } };
        const r = rate(p, { quantity: '0', byDimension });
        expectExplained(r);
        const separately = Object.entries(entries).reduce((acc, [, [vp, q]]) => acc.plus(rate(vp, { quantity: q }).amount), new D(0));
        expect(separately.eq(r.amount)).toBe(true);
        expect(r.breakdown.every((row: BreakdownRow) => row.dimensionValue !== undefined && row.dimensionValue in entries)).toBe(true);
      }),
    );
  });

  it('parsePrice accepts every price the generators make, unchanged', () => {
    fc.assert(
      fc.property(fc.oneof(quantityPrice, percentagePrice, graduatedPercentagePrice, boundedPrice), (p) => {
        expect(parsePrice(JSON.parse(JSON.stringify(p)))).toEqual(p);
      }),
    );
  });

  it('is deterministic and leaves its inputs alone', () => {
    const p: Price = { model: 'graduated', tiers: [{ upTo: '10', unitPrice: '1' }, { upTo: null, unitPrice: '0.5', flatFee: '2' }] };
    const before = JSON.stringify(p);
    expect(rate(p, { quantity: '25' })).toEqual(rate(p, { quantity: '25' }));
    expect(JSON.stringify(p)).toBe(before);
  });
});

describe('examples/ (used by README.md)', () => {
  const dir = path.join(import.meta.dirname, 'examples');
  const read = (f: string) => fs.readFileSync(path.join(dir, f), 'utf8');
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.json'));
  const priceFiles = files.filter((f) => !f.startsWith('invalid-') && !f.endsWith('.values.json') && !f.endsWith('.usage.json'));

  it('has one example per model', () => {
    expect(new Set(priceFiles.map((f) => (JSON.parse(read(f)) as { model: string }).model))).toEqual(new Set(['per_unit', 'package', 'graduated', 'volume', 'graduated_percentage', 'percentage', 'dimensional']));
  });

  it.each(priceFiles)('%s is a valid price', (f) => {
    expect(() => parsePrice(JSON.parse(read(f)))).not.toThrow();
  });

  it.each(files.filter((f) => f.startsWith('invalid-')))('%s is refused', (f) => {
    expect(() => parsePrice(JSON.parse(read(f)))).toThrow(expect.objectContaining({ code: 'PRICE_INVALID' }));
  });

  it.each([
    // the amounts README.md shows
    ['graduated.json', { quantity: '1500' }, '19'],
    ['volume.json', { quantity: '1500' }, '17'],
    ['per-unit.json', { quantity: '125000' }, '46'],
    ['package.json', { quantity: '2500' }, '7.5'],
    ['transform.json', { quantity: '150' }, '30'],
    ['transform-multiply.json', { quantity: '100' }, '120'],
    ['graduated-percentage.json', { quantity: '5050' }, '591'],
    ['minimum-spend.json', { quantity: '0' }, '100'],
    ['maximum-spend.json', { quantity: '12' }, '100'],
    ['cost-plus.json', { quantity: '10' }, '13.3333'],
    ['cost-plus-per-event.json', { quantity: '0', values: parseValuesText(read('cost-plus-per-event.values.json')) }, '2.8123'],
    ['percentage.json', { quantity: '0', values: parseValuesText(read('percentage.values.json')) }, '25.7'],
    ['dimensional.json', { quantity: '0', byDimension: parseByDimensionText(read('dimensional.usage.json')) }, '5.67'],
  ])('%s rates to %s', (f, input, amount) => {
    expect(rate(parsePrice(JSON.parse(read(f))), input).amount).toBe(amount);
  });
});

describe('input files', () => {
  it('reads values exactly from a JSON array or one per line', () => {
    expect(parseValuesText('[12.50, "3", 0.1, 12345678901234567890.123456789]')).toEqual(['12.50', '3', '0.1', '12345678901234567890.123456789']);
    expect(parseValuesText('# amounts\n12.5\n\n 3 \n')).toEqual(['12.5', '3']);
    expect(() => parseValuesText('[1, -2]')).toThrow(expect.objectContaining({ code: 'RATE_INPUT_INVALID', issues: [expect.objectContaining({ path: 'values[1]' })] }));
    expect(() => parseValuesText('{"a": 1}')).toThrow(expect.objectContaining({ code: 'RATE_INPUT_INVALID' }));
  });

  it('reads usage per dimension value, short or long form', () => {
    expect(parseByDimensionText('{"a": 10.5, "b": {"quantity": "2"}, "c": {"values": [1, 2.5]}}')).toEqual({ a: { quantity: '10.5' }, b: { quantity: '2' }, c: { quantity: '0', values: ['1', '2.5'] } });
    expect(() => parseByDimensionText('{"a": true}')).toThrow(expect.objectContaining({ code: 'RATE_INPUT_INVALID', issues: [expect.objectContaining({ path: 'a' })] }));
    expect(() => parseByDimensionText('[1]')).toThrow(expect.objectContaining({ code: 'RATE_INPUT_INVALID' }));
    expect(() => parseByDimensionText('{')).toThrow(expect.objectContaining({ code: 'RATE_INPUT_INVALID' }));
  });
});
