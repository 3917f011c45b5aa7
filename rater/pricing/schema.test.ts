import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { parsePrice, PriceSchema, priceIssues } from './index.ts';

const tiers = (...upTos: (string | null)[]) => upTos.map((upTo) => ({ upTo, unitPrice: '1' }));

describe('parsePrice', () => {
  it('returns the price, integer JSON numbers kept as decimal strings', () => {
    expect(parsePrice({ model: 'graduated', tiers: [{ upTo: 1000, unitPrice: '0.01', flatFee: 5 }, { upTo: null, unitPrice: '0.008' }] })).toEqual({
      model: 'graduated',
      tiers: [
        { upTo: '1000', unitPrice: '0.01', flatFee: '5' },
        { upTo: null, unitPrice: '0.008' },
      ],
    });
  });

  it.each<[string, unknown, [string, string][]]>([
    ['tiers out of order', { model: 'graduated', tiers: tiers('1000', '500', null) }, [['tiers[1].upTo', "must be greater than the previous tier's upTo (1000): tiers are ascending"]]],
    ['equal bounds', { model: 'volume', tiers: tiers('10', '10', null) }, [['tiers[1].upTo', "must be greater than the previous tier's upTo (10): tiers are ascending"]]],
    ['upTo null before the last tier', { model: 'graduated', tiers: tiers(null, '10', null) }, [['tiers[0].upTo', 'only the last tier may have upTo null']]],
    ['a bounded last tier', { model: 'volume', tiers: tiers('10', '20') }, [['tiers[1].upTo', 'the last tier must have upTo null, so that every quantity has a tier']]],
    ['no tiers', { model: 'graduated', tiers: [] }, [['tiers', 'needs at least one tier']]],
    ['a missing upTo', { model: 'graduated', tiers: [{ unitPrice: '1' }] }, [['tiers[0].upTo', 'is required: a decimal string, or null for the last tier']]],
    ['a negative price', { model: 'per_unit', unitPrice: '-0.01' }, [['unitPrice', 'must not be negative (got -0.01)']]],
    ['a negative flat fee', { model: 'volume', tiers: [{ upTo: null, unitPrice: '1', flatFee: '-5' }] }, [['tiers[0].flatFee', 'must not be negative (got -5)']]],
    ['packageSize 0', { model: 'package', packageSize: '0', packagePrice: '5' }, [['packageSize', 'must be greater than 0 (got 0)']]],
    ['an unknown package rounding', { model: 'package', packageSize: '10', packagePrice: '5', round: 'nearest' }, [['round', 'must be one of "up", "down" (got "nearest")']]],
    ['rate above 100', { model: 'percentage', rate: '100.5' }, [['rate', 'is a percentage and must be between 0 and 100 (got 100.5)']]],
    ['rate below 0', { model: 'percentage', rate: '-1' }, [['rate', 'is a percentage and must be between 0 and 100 (got -1)']]],
    ['min above max', { model: 'percentage', rate: '1', perEventMin: '5', perEventMax: '1' }, [['perEventMax', 'must be at least perEventMin (5)']]],
    ['fractional free events', { model: 'percentage', rate: '1', freeEvents: 2.5 }, [['freeEvents', 'must be a whole number of events']]],
    ['negative free events', { model: 'percentage', rate: '1', freeEvents: -1 }, [['freeEvents', 'must not be negative']]],
    ['a fractional JSON number', { model: 'per_unit', unitPrice: 0.1 }, [['unitPrice', 'write 0.1 as a decimal string, e.g. "0.1": a fractional JSON number may already have lost precision']]],
    ['a non-decimal string', { model: 'per_unit', unitPrice: '1,50' }, [['unitPrice', '"1,50" is not a decimal number (expected e.g. "12.5")']]],
    ['a boolean', { model: 'per_unit', unitPrice: true }, [['unitPrice', 'must be a decimal string such as "0.01", got boolean']]],
    ['a missing field', { model: 'per_unit' }, [['unitPrice', 'is required']]],
    ['a misspelt field', { model: 'per_unit', unitprice: '1' }, [['unitPrice', 'is required'], ['unitprice', 'is not a field of this price model']]],
    ['a field of another model', { model: 'per_unit', unitPrice: '1', tiers: [] }, [['tiers', 'is not a field of this price model']]],
    ['divideBy 0', { model: 'per_unit', unitPrice: '1', transform: { divideBy: '0', round: 'up' } }, [['transform.divideBy', 'must be greater than 0 (got 0)']]],
    ['negative included units', { model: 'per_unit', unitPrice: '1', includedUnits: '-1' }, [['includedUnits', 'must not be negative (got -1)']]],
    ['an unknown model', { model: 'tiered' }, [['model', 'must be one of per_unit, package, graduated, volume, graduated_percentage, percentage, dimensional (got "tiered")']]],
    ['no model', { unitPrice: '1' }, [['model', 'must be one of per_unit, package, graduated, volume, graduated_percentage, percentage, dimensional']]],
    ['not an object', [1, 2], [['(price)', 'must be a JSON object, got array']]],
    ['nested dimensional', { model: 'dimensional', dimension: 'region', prices: { eu: { model: 'dimensional', dimension: 'x', prices: {} } } }, [['prices.eu.model', 'a dimensional price cannot contain another dimensional price']]],
    ['a bad nested price', { model: 'dimensional', dimension: 'region', prices: { eu: { model: 'per_unit', unitPrice: '-1' } } }, [['prices.eu.unitPrice', 'must not be negative (got -1)']]],
    ['no prices and no default', { model: 'dimensional', dimension: 'region', prices: {} }, [['prices', 'needs at least one price, or a default']]],
    ['an empty dimension', { model: 'dimensional', dimension: '', default: { model: 'per_unit', unitPrice: '1' }, prices: {} }, [['dimension', 'must not be empty']]],
    ['a transform with neither divideBy nor multiplyBy', { model: 'per_unit', unitPrice: '1', transform: { round: 'up' } }, [['transform.divideBy', 'is required: give divideBy (e.g. "60": minutes to hours) or multiplyBy (e.g. "1.2")']]],
    ['a transform with both', { model: 'per_unit', unitPrice: '1', transform: { divideBy: '2', multiplyBy: '3', round: 'up' } }, [['transform.multiplyBy', 'give divideBy or multiplyBy, not both']]],
    ['multiplyBy 0', { model: 'per_unit', unitPrice: '1', transform: { multiplyBy: '0', round: 'none' } }, [['transform.multiplyBy', 'must be greater than 0 (got 0)']]],
    [
      'round none with a quotient that never ends',
      { model: 'per_unit', unitPrice: '1', transform: { divideBy: '60', round: 'none' } },
      [['transform.round', '"none" keeps the exact quotient, but 60 has a prime factor other than 2 and 5, so e.g. 1 ÷ 60 never ends: round "up", "down" or "half_up", or use a divideBy such as 1000 or 1024']],
    ],
    ['an unknown transform rounding', { model: 'per_unit', unitPrice: '1', transform: { divideBy: '60', round: 'nearest' } }, [['transform.round', 'must be one of "up", "down", "half_up", "none" (got "nearest")']]],
    ['a maximum below the minimum spend', { model: 'per_unit', unitPrice: '1', minimumAmount: '100', maximumAmount: '50' }, [['maximumAmount', 'must be at least minimumAmount (100)']]],
    ['a negative minimum spend', { model: 'graduated', tiers: tiers(null), minimumAmount: '-1' }, [['minimumAmount', 'must not be negative (got -1)']]],
    ['a percentage tier rate above 100', { model: 'graduated_percentage', tiers: [{ upTo: null, rate: '101' }] }, [['tiers[0].rate', 'is a percentage and must be between 0 and 100 (got 101)']]],
    ['a unit price in a percentage tier', { model: 'graduated_percentage', tiers: [{ upTo: null, unitPrice: '1' }] }, [['tiers[0].rate', 'is required'], ['tiers[0].unitPrice', 'is not a field of this price model']]],
    ['percentage tiers out of order', { model: 'graduated_percentage', tiers: [{ upTo: '10', rate: '1' }, { upTo: '5', rate: '1' }, { upTo: null, rate: '1' }] }, [['tiers[1].upTo', "must be greater than the previous tier's upTo (10): tiers are ascending"]]],
    ['a transform on graduated_percentage', { model: 'graduated_percentage', tiers: [{ upTo: null, rate: '1' }], transform: { divideBy: '2', round: 'up' } }, [['transform', 'is not a field of this price model']]],
    ['a huge exponent', { model: 'per_unit', unitPrice: '1e999999' }, [['unitPrice', '"1e999999" is not a decimal number (expected e.g. "12.5")']]],
  ])('names the field and the reason: %s', (_name, json, expected) => {
    const issues = priceIssues(json).map((i) => [i.path, i.message]);
    expect(issues.sort()).toEqual([...expected].sort());
    expect(() => parsePrice(json)).toThrow(expect.objectContaining({ code: 'PRICE_INVALID' }));
  });

  it('lists every field error in one message', () => {
    let message = '';
    try {
      parsePrice({ model: 'graduated', tiers: [{ upTo: '1000', unitPrice: '-1' }, { upTo: '500', unitPrice: '2', flatFee: 0.5 }, { upTo: null, unitPrice: 'x' }], includedUnits: '-3' });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message.split('\n')).toEqual([
      'invalid price (5 problems):',
      '  - tiers[0].unitPrice: must not be negative (got -1)',
      '  - tiers[1].flatFee: write 0.5 as a decimal string, e.g. "0.5": a fractional JSON number may already have lost precision',
      '  - tiers[2].unitPrice: "x" is not a decimal number (expected e.g. "12.5")',
      "  - tiers[1].upTo: must be greater than the previous tier's upTo (1000): tiers are ascending",
      '  - includedUnits: must not be negative (got -3)',
    ]);
  });

  it('keeps old transforms as they were, and reads the new ones', () => {
    expect(parsePrice({ model: 'per_unit', unitPrice: '10', transform: { divideBy: '60', round: 'up' } })).toEqual({ model: 'per_unit', unitPrice: '10', transform: { divideBy: '60', round: 'up' } });
    expect(parsePrice({ model: 'per_unit', unitPrice: '1', transform: { multiplyBy: '1.2', round: 'none' } })).toEqual({ model: 'per_unit', unitPrice: '1', transform: { multiplyBy: '1.2', round: 'none' } });
    expect(priceIssues({ model: 'per_unit', unitPrice: '1', transform: { divideBy: '1024', round: 'none' } })).toEqual([]);
  });

  it('accepts a first tier up to 0 (a free zero-usage tier)', () => {
    expect(priceIssues({ model: 'volume', tiers: tiers('0', '10', null) })).toEqual([]);
  });

  it('PriceSchema composes into other schemas and keeps its field paths', () => {
    const Charge = z.object({ key: z.string(), price: PriceSchema });
    const r = Charge.safeParse({ key: 'api', price: { model: 'package', packageSize: '0', packagePrice: '1' } });
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => [i.path.join('.'), i.message])).toEqual([['price.packageSize', 'must be greater than 0 (got 0)']]);
  });
});
