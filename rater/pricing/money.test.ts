import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { D } from './decimal.ts';
import { minorUnits, roundMoney, toMinor, type RoundingMode } from './index.ts';

describe('money', () => {
  it.each([
    ['USD', 2],
    ['EUR', 2],
    ['GBP', 2],
    ['JPY', 0],
    ['KRW', 0],
    ['BHD', 3],
    ['KWD', 3],
    ['JOD', 3],
    ['CLF', 4],
    ['usd', 2], // case-insensitive
  ])('%s has %i minor-unit digits', (currency, digits) => {
    expect(minorUnits(currency)).toBe(digits);
  });

  it.each([['XYZ'], ['US'], [''], ['DOLLAR'], ['__proto__'], ['toString']])('unknown currency %j is an error, not 2 decimals', (currency) => {
    expect(() => roundMoney('1', currency)).toThrow(expect.objectContaining({ code: 'CURRENCY_UNKNOWN' }));
    expect(() => toMinor('1', currency)).toThrow(expect.objectContaining({ code: 'CURRENCY_UNKNOWN' }));
  });

  it.each<[string, string, RoundingMode, string, string]>([
    // [amount, currency, mode, major, minor]
    ['12.345', 'USD', 'half_up', '12.35', '1235'],
    ['12.345', 'USD', 'half_even', '12.34', '1234'],
    ['12.355', 'USD', 'half_even', '12.36', '1236'],
    ['12.349', 'USD', 'down', '12.34', '1234'],
    ['12.341', 'USD', 'up', '12.35', '1235'],
    ['-12.345', 'USD', 'half_up', '-12.35', '-1235'], // ties away from zero
    ['-12.349', 'USD', 'down', '-12.34', '-1234'], // toward zero
    ['-12.341', 'USD', 'up', '-12.35', '-1235'], // away from zero
    ['-0.001', 'USD', 'half_up', '0.00', '0'], // never "-0.00"
    ['12', 'USD', 'half_up', '12.00', '1200'],
    ['0', 'EUR', 'half_up', '0.00', '0'],
    ['1234.5', 'JPY', 'half_up', '1235', '1235'],
    ['1234.5', 'JPY', 'half_even', '1234', '1234'],
    ['1.0005', 'KWD', 'half_up', '1.001', '1001'],
    ['1.2345', 'BHD', 'down', '1.234', '1234'],
    ['600000000000000000007.505', 'USD', 'half_up', '600000000000000000007.51', '60000000000000000000751'], // very large stays exact
    ['0.000000000001', 'USD', 'up', '0.01', '1'],
  ])('%s %s %s → %s (%s minor)', (amount, currency, mode, major, minor) => {
    expect(roundMoney(amount, currency, mode)).toBe(major);
    expect(toMinor(amount, currency, mode)).toBe(minor);
  });

  it('rounds half up by default', () => {
    expect(roundMoney('0.125', 'USD')).toBe('0.13');
    expect(toMinor('0.125', 'USD')).toBe('13');
  });

  it('refuses an amount that is not a decimal', () => {
    expect(() => roundMoney('12,50', 'USD')).toThrow(expect.objectContaining({ code: 'RATE_INPUT_INVALID' }));
  });

  it('toMinor is roundMoney without the decimal point', () => {
    const amount = fc.tuple(fc.bigInt({ min: -(10n ** 15n), max: 10n ** 15n }), fc.integer({ min: 0, max: 6 })).map(([n, s]) => new D(n.toString()).div(new D(10).pow(s)).toFixed());
    fc.assert(
      fc.property(amount, fc.constantFrom('USD', 'JPY', 'KWD', 'CLF'), fc.constantFrom<RoundingMode>('half_up', 'half_even', 'down', 'up'), (a, c, mode) => {
        const major = roundMoney(a, c, mode);
        expect(new D(toMinor(a, c, mode)).eq(new D(major).times(new D(10).pow(minorUnits(c))))).toBe(true);
        expect(major.split('.')[1]?.length ?? 0).toBe(minorUnits(c));
        // rounding moves the amount by less than one minor unit
        expect(new D(major).minus(a).abs().lt(new D(10).pow(-minorUnits(c)))).toBe(true);
      }),
    );
  });
});
