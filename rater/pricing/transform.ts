/**
 * What happens to a quantity before a quantity model (per_unit, package, graduated, volume) prices
 * it, in this order:
 *
 *   1. transform: divide by `divideBy` (Stripe's `transform_quantity`) or multiply by `multiplyBy`
 *      (OpenMeter's unit config, e.g. a 1.2 margin on tokens), then round:
 *        - `up` / `down` / `half_up`: to a whole number (1,500,000 bytes ÷ 1,000,000, up → 2);
 *        - `none`: keep the exact result. A product is always exact; a quotient only when
 *          `divideBy` has no prime factor but 2 and 5 (1000, 1024, 0.5: every quotient ends),
 *          which the schema checks, so 10 ÷ 3 is never silently cut to some digits.
 *      Old prices (`{ divideBy, round: "up" | "down" }`) mean what they always meant.
 *   2. included units: deduct `includedUnits` from the (transformed) quantity, never below 0.
 *
 * The result is the billed quantity the model prices. Each configured step adds a zero-amount
 * breakdown row so the invoice shows what was done to the metered quantity.
 */
import { D, fmt, type Dec } from './decimal.ts';
import type { BreakdownRow, PriceCommon, QuantityTransform, TransformRounding } from './types.ts';

/** `a / b` rounded to a whole number, exactly (no rounded intermediate): `a` ≥ 0, `b` > 0. */
export function divideToWhole(a: Dec, b: Dec, round: 'up' | 'down' | 'half_up'): Dec {
  const whole = a.dividedToIntegerBy(b);
  const remainder = a.minus(whole.times(b));
  if (remainder.isZero()) return whole;
  if (round === 'up') return whole.plus(1);
  if (round === 'half_up') return remainder.times(2).gte(b) ? whole.plus(1) : whole;
  return whole;
}

/**
 * Whether `a / d` is a finite decimal for every decimal `a`: `d` (as an integer over a power of
 * ten) has no prime factor but 2 and 5. The schema refuses `round: "none"` with any other divisor.
 */
export function dividesExactly(d: Dec): boolean {
  if (d.lte(0)) return false;
  let n = BigInt(d.times(new D(10).pow(d.decimalPlaces())).toFixed());
  for (const p of [2n, 5n]) while (n % p === 0n) n /= p;
  return n === 1n;
}

const roundWords: Record<TransformRounding, string> = {
  up: 'rounded up to a whole number',
  down: 'rounded down to a whole number',
  half_up: 'rounded half up to a whole number',
  none: 'not rounded',
};

/** The transformed quantity, exact. */
export function transformQuantity(t: QuantityTransform, q: Dec): Dec {
  if ('multiplyBy' in t) {
    const product = q.times(new D(t.multiplyBy));
    if (t.round === 'none') return product;
    return divideToWhole(product, new D(1), t.round);
  }
  const divisor = new D(t.divideBy);
  if (t.round !== 'none') return divideToWhole(q, divisor, t.round);
  // Exact because the schema allows `none` only with a divisor of 2s and 5s (dividesExactly).
  if (!dividesExactly(divisor)) throw new Error(`transform divideBy ${t.divideBy} with round none has no exact quotient: the schema must refuse it`);
  return q.div(divisor);
}

function transformRow(t: QuantityTransform, q: Dec, transformed: Dec): BreakdownRow {
  const op = 'multiplyBy' in t ? `× ${t.multiplyBy}` : `÷ ${t.divideBy}`;
  return { description: `Quantity ${fmt(q)} ${op}, ${roundWords[t.round]}: ${fmt(transformed)}`, units: fmt(transformed), amount: '0' };
}

export function applyQuantityTransform(price: PriceCommon, quantity: Dec): { billedQuantity: Dec; rows: BreakdownRow[] } {
  const rows: BreakdownRow[] = [];
  let q = quantity;
  if (price.transform) {
    const transformed = transformQuantity(price.transform, q);
    rows.push(transformRow(price.transform, q, transformed));
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
