import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MAD_SCALE, median, scaledMad, weightedMedian } from './robust.ts';

describe('robust statistics', () => {
  it.each<[string, number[], number]>([
    ['empty', [], Number.NaN],
    ['one', [7], 7],
    ['odd', [3, 1, 2], 2],
    ['even: mean of the middle two', [4, 1, 3, 2], 2.5],
    ['an outlier does not move it', [2100, 2050, 2200, 30_000], 2150],
  ])('median: %s', (_name, xs, expected) => {
    expect(median(xs)).toEqual(expected);
  });

  it.each<[string, number[], number]>([
    ['fewer than two values', [5], 0],
    ['all equal', [3, 3, 3, 3], 0],
    ['1, 2, 3, 4, 100: one outlier', [1, 2, 3, 4, 100], MAD_SCALE * 1],
  ])('scaled MAD: %s', (_name, xs, expected) => {
    expect(scaledMad(xs)).toBeCloseTo(expected, 10);
  });

  it.each<[string, number[], number[], number]>([
    ['equal weights: the median', [1, 2, 3], [1, 1, 1], 2],
    ['a heavy value wins', [1, 2, 3], [1, 1, 5], 3],
    ['exact half: average of the two', [1, 2], [1, 1], 1.5],
    ['zero weights are ignored', [100, 1, 2], [0, 1, 3], 2],
    ['no weight: NaN', [1], [0], Number.NaN],
  ])('weighted median: %s', (_name, xs, ws, expected) => {
    expect(weightedMedian(xs, ws)).toEqual(expected);
  });

  it('properties: the median lies within the data and does not move when a minority goes to infinity', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { minLength: 3, maxLength: 50 }), (xs) => {
        const m = median(xs);
        expect(m).toBeGreaterThanOrEqual(Math.min(...xs));
        expect(m).toBeLessThanOrEqual(Math.max(...xs));
        const sorted = [...xs].sort((a, b) => a - b);
        const k = Math.floor((xs.length - 1) / 2); // fewer than half
        const spoiled = [...sorted.slice(0, xs.length - k), ...new Array<number>(k).fill(1e12)];
        expect(median(spoiled)).toBeLessThanOrEqual(sorted[xs.length - k - 1]!);
        expect(weightedMedian(xs, xs.map(() => 1))).toBeGreaterThanOrEqual(Math.min(...xs));
      }),
    );
  });

  it('property: scaling the data scales median and MAD', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0, max: 1e6, noNaN: true }), { minLength: 2, maxLength: 20 }), fc.double({ min: 0.001, max: 1000, noNaN: true }), (xs, k) => {
        expect(median(xs.map((x) => x * k))).toBeCloseTo(median(xs) * k, 3);
        expect(scaledMad(xs.map((x) => x * k))).toBeCloseTo(scaledMad(xs) * k, 3);
      }),
    );
  });
});
