/**
 * Graduated tiers (Stripe's `tiers_mode: graduated`): each unit is priced by the tier it falls in,
 * and the flat fee of every tier reached is added once. `upTo` is inclusive: with tiers up to 1000
 * and above, unit 1000 is still in tier 1 and unit 1001 is the first unit of tier 2, so 1000 units
 * never pay tier 2's flat fee.
 *
 * A tier is reached when some of the quantity falls in it; the first tier is always reached, so
 * quantity 0 bills the first tier's flat fee (Stripe: the flat amount is "for the entire tier,
 * regardless of the number of units in the tier"; OpenMeter and Lago bill it at zero usage too).
 * To bill nothing at zero usage, start with a free tier `{ "upTo": "0", "unitPrice": "0" }`.
 * Fractional quantities fill tiers fractionally: 1000.5 units put 0.5 units in tier 2.
 */
import { D, fmt, sum, type Dec, type ModelResult } from './decimal.ts';
import { tierBounds } from './tiers.ts';
import type { BreakdownRow, GraduatedPrice } from './types.ts';

export function rateGraduated(price: GraduatedPrice, quantity: Dec): ModelResult {
  const rows: BreakdownRow[] = [];
  const amounts: Dec[] = [];
  const bounds = tierBounds(price.tiers);
  const last = bounds[bounds.length - 1];
  // The schema requires an unbounded last tier; an unvalidated price without one is a caller bug.
  if (!last || (last.upper !== null && quantity.gt(last.upper))) {
    throw new Error(`graduated price has no tier for quantity ${fmt(quantity)}: the last tier must have upTo null`);
  }
  for (const b of bounds) {
    if (b.index > 0 && quantity.lte(b.lower)) break;
    const top = b.upper === null ? quantity : D.min(quantity, b.upper);
    const units = D.max(top.minus(b.lower), 0);
    const flatFee = new D(b.tier.flatFee ?? 0);
    const amount = units.times(new D(b.tier.unitPrice)).plus(flatFee);
    amounts.push(amount);
    rows.push({
      description: `Tier ${b.index + 1} (${b.label}): ${fmt(units)} × ${b.tier.unitPrice}${b.tier.flatFee !== undefined ? ` + flat fee ${b.tier.flatFee}` : ''}`,
      units: fmt(units),
      unitPrice: b.tier.unitPrice,
      ...(b.tier.flatFee !== undefined ? { flatFee: b.tier.flatFee } : {}),
      amount: fmt(amount),
      tier: b.label,
    });
  }
  return { amount: sum(amounts), rows };
}
