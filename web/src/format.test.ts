import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Decimal } from 'decimal.js';
import { axisNumber, compareDecimal, minorDigits, money, percent, period, quantity, roundDecimal, unitPrice } from './format.ts';
import { localMidnights } from './chart.ts';

describe('dashboard formatting', () => {
  it.each([
    ['119.59', 'USD', '$119.59'],
    ['213.5', 'USD', '$213.50'],
    ['29', 'USD', '$29.00'],
    ['29.00', 'USD', '$29.00'],
    ['-5.00', 'USD', '-$5.00'],
    ['-7.5', 'USD', '-$7.50'],
    ['0.00002', 'USD', '$0.00'],
    ['-0.004', 'USD', '$0.00'],
    ['2.345', 'USD', '$2.35'],
    ['-2.345', 'USD', '-$2.35'],
    ['9.995', 'USD', '$10.00'],
    ['1234567.891', 'USD', '$1,234,567.89'],
    ['49.62', 'EUR', '€49.62'],
    ['1200', 'JPY', '¥1,200'],
    ['1200.5', 'JPY', '¥1,201'],
    ['1.2345', 'KWD', 'KWD 1.235'],
    // Beyond a float's 15-17 significant digits: every digit survives.
    ['1234567890123456789.125', 'USD', '$1,234,567,890,123,456,789.13'],
  ])('money(%s, %s) is in the minor unit, grouped: %s', (amount, currency, shown) => {
    expect(money(amount, currency).replace(/\u00a0/g, ' ')).toBe(shown);
  });

  it('money in another locale puts the symbol and separators where that locale does', () => {
    expect(money('1234.5', 'EUR', 'de-DE').replace(/\u00a0/g, ' ')).toBe('1.234,50 €');
  });

  it.each([
    ['0.00002', 'USD', '$0.00002'],
    ['0.05', 'USD', '$0.05'],
    ['0.050', 'USD', '$0.05'],
    ['49', 'USD', '$49.00'],
    ['1500.125', 'USD', '$1,500.125'],
    ['3', 'JPY', '¥3'],
  ])('unitPrice(%s, %s) keeps every digit: %s', (amount, currency, shown) => {
    expect(unitPrice(amount, currency)).toBe(shown);
  });

  it.each([
    ['1234567', undefined, '1,234,567'],
    ['817.460264728', 2, '817.46'],
    ['817.455', 2, '817.46'],
    ['817.4', 2, '817.4'],
    ['817.000', 2, '817'],
    ['0.46666666666666666667', undefined, '0.4667'],
    ['-120', undefined, '-120'],
    ['-0.001', 2, '0'],
    ['12345678901234567890123', undefined, '12,345,678,901,234,567,890,123'],
    ['not-a-number', undefined, 'not-a-number'],
  ])('quantity(%s, %s) is grouped and rounded for reading: %s', (value, decimals, shown) => {
    expect(quantity(value, decimals)).toBe(shown);
  });

  it('rounding is done on the decimal string, half-up like invoices, and agrees with decimal.js', () => {
    expect(roundDecimal('0.015', 2)).toBe('0.02');
    expect(roundDecimal('1.005', 2)).toBe('1.01'); // 1.005 as a float is 1.00499999…
    expect(roundDecimal('99.5', 0)).toBe('100');
    const dec = fc.tuple(fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }), fc.integer({ min: 0, max: 12 })).map(([n, s]) => new Decimal(n.toString()).div(new Decimal(10).pow(s)).toFixed(s));
    fc.assert(
      fc.property(dec, fc.integer({ min: 0, max: 6 }), (a, d) => {
        const want = new Decimal(a).toDecimalPlaces(d, Decimal.ROUND_HALF_UP);
        return roundDecimal(a, d) === (want.isZero() ? want.abs() : want).toFixed(d);
      }),
    );
  });

  it('minor digits come from the currency', () => {
    expect([minorDigits('USD'), minorDigits('EUR'), minorDigits('JPY'), minorDigits('KWD')]).toEqual([2, 2, 0, 3]);
  });

  it('percentages and chart axis labels', () => {
    expect(percent('0.46666')).toBe('46.7%');
    expect(percent('1')).toBe('100.0%');
    expect(percent('0.005', 0)).toBe('1%');
    expect(axisNumber(125000)).toBe('125,000');
    expect(axisNumber(0.125)).toBe('0.13');
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
