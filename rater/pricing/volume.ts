/**
 * Volume tiers (Stripe's `tiers_mode: volume`): the tier that contains the whole quantity prices
 * every unit, plus that tier's flat fee. `upTo` is inclusive: 1000 units with a first tier up to
 * 1000 are all priced by tier 1; 1000.5 units are all priced by tier 2. The total can drop when
 * the quantity crosses into a cheaper tier; that is the model, not a bug.
 *
 * Quantity 0 falls in the first tier (0 ≤ its upTo) and so bills its flat fee with 0 units: Stripe
 * documents the flat amount as "for the entire tier, regardless of the number of units in the
 * tier"; OpenMeter (tieredvolume.go) and Lago (lago-api #5760, after getlago/lago#648) do the same.
 * To bill nothing at zero usage, start with a free tier `{ "upTo": "0", "unitPrice": "0" }`.
 */
import { D, fmt, type Dec, type ModelResult } from './decimal.ts';
import { tierBounds } from './tiers.ts';
import type { VolumePrice } from './types.ts';

export function rateVolume(price: VolumePrice, quantity: Dec): ModelResult {
  const bounds = tierBounds(price.tiers);
  const b = bounds.find((t) => t.upper === null || quantity.lte(t.upper));
  // The schema requires an unbounded last tier; an unvalidated price without one is a caller bug.
  if (!b) throw new Error(`volume price has no tier for quantity ${fmt(quantity)}: the last tier must have upTo null`);
  const flatFee = new D(b.tier.flatFee ?? 0);
  const amount = quantity.times(new D(b.tier.unitPrice)).plus(flatFee);
  return {
    amount,
    rows: [
      {
        description: `Tier ${b.index + 1} (${b.label}) prices all ${fmt(quantity)} units: ${fmt(quantity)} × ${b.tier.unitPrice}${b.tier.flatFee !== undefined ? ` + flat fee ${b.tier.flatFee}` : ''}`,
        units: fmt(quantity),
        unitPrice: b.tier.unitPrice,
        ...(b.tier.flatFee !== undefined ? { flatFee: b.tier.flatFee } : {}),
        amount: fmt(amount),
        tier: b.label,
      },
    ],
  };
}
