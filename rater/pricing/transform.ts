/**
 * What happens to a quantity before a quantity model (per_unit, package, graduated, volume) prices
 * it, in this order:
 *
 *   1. transform (Stripe's `transform_quantity`): divide by `divideBy`, then round to a whole
 *      number, up or down. 1,500,000 bytes with divideBy 1,000,000 and round up bills 2.
 *   2. included units: deduct `includedUnits` from the (transformed) quantity, never below 0.
 *
 * The result is the billed quantity the model prices. Each configured step adds a zero-amount
 * breakdown row so the invoice shows what was done to the metered quantity.
 */
import { D, fmt, type Dec } from './decimal.ts';
import type { BreakdownRow, PriceCommon } from './types.ts';

/** `a / b` rounded to a whole number, exactly (no rounded intermediate): `a` ≥ 0, `b` > 0. */
export function divideToWhole(a: Dec, b: Dec, round: 'up' | 'down'): Dec {
  const whole = a.dividedToIntegerBy(b);
  const remainder = a.minus(whole.times(b));
  return round === 'up' && remainder.gt(0) ? whole.plus(1) : whole;
}

export function applyQuantityTransform(price: PriceCommon, quantity: Dec): { billedQuantity: Dec; rows: BreakdownRow[] } {
  const rows: BreakdownRow[] = [];
  let q = quantity;
  if (price.transform) {
    const { divideBy, round } = price.transform;
    const transformed = divideToWhole(q, new D(divideBy), round);
    rows.push({
      description: `Quantity ${fmt(q)} ÷ ${divideBy}, rounded ${round} to a whole number: ${fmt(transformed)}`,
      units: fmt(transformed),
      amount: '0',
    });
    q = transformed;
  }
  if (price.includedUnits !== undefined) {
    const included = new D(price.includedUnits);
    const used = D.min(included, q);
    rows.push({
      description: `Included units: ${fmt(used)} of ${price.includedUnits} used, free of charge`,
      units: fmt(used),
      unitPrice: '0',
      amount: '0',
    });
    q = q.minus(used);
  }
  return { billedQuantity: q, rows };
}
