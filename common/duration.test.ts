import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatDurationMs, parseDurationMs } from './duration.ts';

const SECOND = 1_000;
const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

describe('parseDurationMs', () => {
  it.each([
    ['250ms', 250],
    ['30s', 30 * SECOND],
    ['5m', 5 * MINUTE],
    ['24h', 24 * HOUR],
    ['60d', 60 * DAY],
    ['0s', 0],
    ['1.5s', 1_500],
    ['0.5h', 30 * MINUTE],
    ['1.5ms', 2],
    ['  10s  ', 10 * SECOND],
    ['10 s', 10 * SECOND],
    ['007m', 7 * MINUTE],
  ])('%j is %d ms', (text, ms) => {
    expect(parseDurationMs(text)).toBe(ms);
  });

  it.each([
    [''],
    ['abc'],
    ['10'],
    ['s'],
    ['10x'],
    ['10S'],
    ['10 sec'],
    ['-5s'],
    ['+5s'],
    ['.5s'],
    ['5.s'],
    ['1e3s'],
    ['10s5m'],
    ['5m ago'],
  ])('%j is not a duration', (text) => {
    expect(parseDurationMs(text)).toBeUndefined();
  });

  it('is the count times the unit for every whole count and unit', () => {
    const units = { ms: 1, s: SECOND, m: MINUTE, h: HOUR, d: DAY } as const;
    fc.assert(
      fc.property(fc.nat({ max: 1_000_000 }), fc.constantFrom(...(Object.keys(units) as (keyof typeof units)[])), (n, unit) => {
        expect(parseDurationMs(`${n}${unit}`)).toBe(n * units[unit]);
      }),
    );
  });
});

describe('formatDurationMs', () => {
  it.each([
    [0, '0ms'],
    [1, '1ms'],
    [999, '999ms'],
    [1_000, '1s'],
    [1_500, '1500ms'],
    [MINUTE, '1m'],
    [90 * SECOND, '90s'],
    [HOUR, '1h'],
    [36 * HOUR, '36h'],
    [DAY, '1d'],
    [60 * DAY, '60d'],
    [DAY + 1, `${DAY + 1}ms`],
  ])('%d ms is %j', (ms, text) => {
    expect(formatDurationMs(ms)).toBe(text);
  });

  it('round-trips through parseDurationMs for every whole number of milliseconds', () => {
    fc.assert(
      fc.property(fc.nat({ max: 1_000 * 365 * DAY }), (ms) => {
        const text = formatDurationMs(ms);
        expect(text).toMatch(/^\d+(ms|s|m|h|d)$/);
        expect(parseDurationMs(text)).toBe(ms);
      }),
    );
  });

  it('uses the largest unit that divides the duration', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10_000 }), fc.constantFrom(SECOND, MINUTE, HOUR, DAY), (n, unit) => {
        const text = formatDurationMs(n * unit);
        const larger = [SECOND, MINUTE, HOUR, DAY].filter((u) => u > unit && (n * unit) % u === 0);
        // The number in front is never bigger than n; it is smaller exactly when a larger unit divides.
        const count = Number(/^\d+/.exec(text)![0]);
        expect(count <= n).toBe(true);
        expect(count < n).toBe(larger.length > 0);
      }),
    );
  });
});
