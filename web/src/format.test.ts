import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Decimal } from 'decimal.js';
import { compareDecimal, money, period } from './format.ts';
import { localMidnights } from './chart.ts';

describe('dashboard formatting', () => {
  it.each([
    ['119.59', 'USD', '$119.59'],
    ['-5.00', 'USD', '-$5.00'],
    ['0.00002', 'USD', '$0.00002'],
    ['49.62', 'EUR', '€49.62'],
    ['1234567890123456789.123456789', 'USD', '$1234567890123456789.123456789'],
    ['12', 'JPY', '¥12'],
  ])('money(%s, %s) keeps the exact digits: %s', (amount, currency, shown) => {
    expect(money(amount, currency)).toBe(shown);
  });

  it('compareDecimal orders decimal strings exactly, beyond float precision', () => {
    expect(compareDecimal('10', '9.999999999')).toBe(1);
    expect(compareDecimal('-1', '0')).toBe(-1);
    expect(compareDecimal('-0', '0.000')).toBe(0);
    expect(compareDecimal('007.50', '7.5')).toBe(0);
    expect(compareDecimal('12345678901234567890.000000001', '12345678901234567890')).toBe(1);
    const dec = fc.tuple(fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }), fc.integer({ min: 0, max: 9 })).map(([n, s]) => new Decimal(n.toString()).div(new Decimal(10).pow(s)).toFixed(s));
    fc.assert(fc.property(dec, dec, (a, b) => compareDecimal(a, b) === new Decimal(a).comparedTo(new Decimal(b))));
  });

  it('periods read in the customer’s zone, the last day included', () => {
    expect(period('2026-11-01T04:00:00.000Z', '2026-12-01T05:00:00.000Z', 'America/New_York')).toBe('Nov 1 – Nov 30, 2026');
    expect(period('2026-09-30T22:00:00.000Z', '2026-10-31T23:00:00.000Z', 'Europe/Berlin')).toBe('Oct 1 – Oct 31, 2026');
  });

  it('day windows for the chart are local midnights, across a DST change', () => {
    // Berlin leaves summer time on Sunday, October 25, 2026: that day has 25 hours.
    const days = localMidnights(Date.parse('2026-10-23T12:00:00Z'), Date.parse('2026-10-27T00:00:00Z'), 'Europe/Berlin');
    expect(days.map((d) => new Date(d).toISOString())).toEqual(['2026-10-23T22:00:00.000Z', '2026-10-24T22:00:00.000Z', '2026-10-25T23:00:00.000Z', '2026-10-26T23:00:00.000Z']);
  });
});
