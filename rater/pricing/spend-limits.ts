/**
 * Per-charge minimum and maximum spend (OpenMeter's `minimumAmount` / `maximumAmount` price
 * commitments): a floor and a cap on the amount one price gives for one rating, i.e. one charge
 * over its billing period on an invoice. Applied after the model (and so after transform, included
 * units, tiers and per-event bounds), in this order:
 *
 *   - minimum: an amount below `minimumAmount` is raised to it, also at zero usage (OpenMeter:
 *     "when there is no usage, we are still honoring the minimum spend");
 *   - maximum: an amount above `maximumAmount` is capped at it.
 *
 * Each adjustment is its own breakdown row (positive for the minimum, negative for the cap), so
 * the invoice line explains it and the rows still sum to the amount. The schema keeps
 * `minimumAmount` ≤ `maximumAmount`. Neither is prorated: a charge in force for part of a period
 * still commits to its whole minimum (as OpenMeter bills it on the period's last line).
 */
import { D, fmt, type Dec } from './decimal.ts';
import type { BreakdownRow, SpendLimits } from './types.ts';

export function applySpendLimits(limits: SpendLimits, amount: Dec): { amount: Dec; rows: BreakdownRow[] } {
  if (limits.minimumAmount !== undefined) {
    const min = new D(limits.minimumAmount);
    if (amount.lt(min)) {
      return { amount: min, rows: [{ description: `Minimum spend ${limits.minimumAmount}: the charge came to ${fmt(amount)}, raised to the minimum`, units: '1', amount: fmt(min.minus(amount)) }] };
    }
  }
  if (limits.maximumAmount !== undefined) {
    const max = new D(limits.maximumAmount);
    if (amount.gt(max)) {
      return { amount: max, rows: [{ description: `Maximum spend ${limits.maximumAmount}: the charge came to ${fmt(amount)}, capped at the maximum`, units: '1', amount: fmt(max.minus(amount)) }] };
    }
  }
  return { amount, rows: [] };
}
