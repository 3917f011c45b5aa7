/** Shared by graduated.ts, volume.ts and graduated-percentage.ts: tier bounds and their labels. */
import { D, type Dec } from './decimal.ts';
import type { Tier } from './types.ts';

export interface TierBounds<T extends { upTo: string | null } = Tier> {
  index: number;
  tier: T;
  /** Exclusive lower bound: the previous tier's upTo, 0 for the first tier. */
  lower: Dec;
  /** Inclusive upper bound; null for the last, unbounded tier. */
  upper: Dec | null;
  /** e.g. "1–1000", "1001–∞"; "(0.5, 2]" when a bound is fractional; "0" for a first tier with upTo 0. */
  label: string;
}

export function tierBounds<T extends { upTo: string | null }>(tiers: T[]): TierBounds<T>[] {
  let lower = new D(0);
  return tiers.map((tier, index) => {
    const upper = tier.upTo === null ? null : new D(tier.upTo);
    const b = { index, tier, lower, upper, label: tierLabel(lower, upper) };
    if (upper) lower = upper;
    return b;
  });
}

function tierLabel(lower: Dec, upper: Dec | null): string {
  if (upper?.isZero()) return '0';
  if (lower.isInteger() && (upper === null || upper.isInteger())) return `${lower.plus(1).toFixed()}–${upper === null ? '∞' : upper.toFixed()}`;
  return `(${lower.toFixed()}, ${upper === null ? '∞)' : `${upper.toFixed()}]`}`;
}
