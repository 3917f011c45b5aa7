/**
 * Graduated percentage (Lago's `graduated_percentage` charge model): the summed amount (e.g. the
 * payment volume of the period) fills the tiers in order, each tier takes its `rate` percent of
 * the amount within it, and the `flatFee` of every tier reached is added once (for the whole tier,
 * not per transaction). Source: https://getlago.com/docs/guide/plans/charges/charge-models/graduated-percentage
 * and lago-api app/services/charge_models/graduated_percentage_service.rb.
 *
 * Bounds are inclusive, as in graduated.ts: with a first tier up to 1000, amount 1000 stays in
 * tier 1 and tier 2's flat fee starts above it. As for Meterline's graduated tiers, the first tier
 * is always reached, so an amount of 0 bills the first tier's flat fee (Lago bills nothing at 0);
 * begin with `{ "upTo": "0", "rate": "0" }` to bill nothing at zero.
 */
import { D, fmt, sum, type Dec, type ModelResult } from './decimal.ts';
import { tierBounds } from './tiers.ts';
import type { BreakdownRow, GraduatedPercentagePrice } from './types.ts';

export function rateGraduatedPercentage(price: GraduatedPercentagePrice, total: Dec): ModelResult {
  const rows: BreakdownRow[] = [];
  const amounts: Dec[] = [];
  const bounds = tierBounds(price.tiers);
  const last = bounds[bounds.length - 1];
  // The schema requires an unbounded last tier; an unvalidated price without one is a caller bug.
  if (!last || (last.upper !== null && total.gt(last.upper))) {
    throw new Error(`graduated_percentage price has no tier for amount ${fmt(total)}: the last tier must have upTo null`);
  }
  for (const b of bounds) {
    if (b.index > 0 && total.lte(b.lower)) break;
    const top = b.upper === null ? total : D.min(total, b.upper);
    const within = D.max(top.minus(b.lower), 0);
    const factor = new D(b.tier.rate).div(100);
    const flatFee = new D(b.tier.flatFee ?? 0);
    const amount = within.times(factor).plus(flatFee);
    amounts.push(amount);
    rows.push({
      description: `Tier ${b.index + 1} (${b.label}): ${b.tier.rate}% of ${fmt(within)}${b.tier.flatFee !== undefined ? ` + flat fee ${b.tier.flatFee}` : ''}`,
      units: fmt(within),
      unitPrice: fmt(factor),
      ...(b.tier.flatFee !== undefined ? { flatFee: b.tier.flatFee } : {}),
      amount: fmt(amount),
      tier: b.label,
    });
  }
  return { amount: sum(amounts), rows };
}
