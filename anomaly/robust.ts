/**
 * Robust statistics for the detector: median, scaled MAD and a weighted median. Pure; no I/O.
 * Inputs are small arrays (a handful of weekly samples, a day or two of hourly ratios), so the
 * simple sort-based versions are the right ones.
 */

/** Consistency constant: 1.4826 × MAD estimates the standard deviation of normal data. */
export const MAD_SCALE = 1.4826;

/** Median of `xs`; NaN for an empty array. Does not modify `xs`. */
export function median(xs: readonly number[]): number {
  const n = xs.length;
  if (n === 0) return Number.NaN;
  if (n === 1) return xs[0]!;
  const s = sortedCopy(xs);
  const mid = n >> 1;
  return n % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** 1.4826 × median(|x - median(x)|): a standard deviation that one or two outliers cannot inflate. 0 for fewer than two values. */
export function scaledMad(xs: readonly number[]): number {
  if (xs.length < 2) return 0;
  const m = median(xs);
  return MAD_SCALE * median(xs.map((x) => Math.abs(x - m)));
}

/**
 * Weighted median: the value at which half the total weight lies on either side (the lower one
 * on an exact tie between two values, averaged). Entries with weight ≤ 0 are ignored; NaN when no
 * weight remains.
 */
export function weightedMedian(values: readonly number[], weights: readonly number[]): number {
  const pairs: Array<[number, number]> = [];
  let total = 0;
  for (let i = 0; i < values.length; i++) {
    const w = weights[i] ?? 0;
    if (w > 0) {
      pairs.push([values[i]!, w]);
      total += w;
    }
  }
  if (pairs.length === 0) return Number.NaN;
  pairs.sort((a, b) => a[0] - b[0]);
  const half = total / 2;
  let acc = 0;
  for (let i = 0; i < pairs.length; i++) {
    acc += pairs[i]![1];
    if (acc > half) return pairs[i]![0];
    if (acc === half) return i + 1 < pairs.length ? (pairs[i]![0] + pairs[i + 1]![0]) / 2 : pairs[i]![0];
  }
  return pairs[pairs.length - 1]![0];
}

/** Ascending copy; insertion sort for the handful of values the detector sorts per hour. */
function sortedCopy(xs: readonly number[]): number[] {
  if (xs.length > 16) return [...xs].sort((a, b) => a - b);
  const s = xs.slice();
  for (let i = 1; i < s.length; i++) {
    const x = s[i]!;
    let j = i - 1;
    while (j >= 0 && s[j]! > x) {
      s[j + 1] = s[j]!;
      j--;
    }
    s[j + 1] = x;
  }
  return s;
}
