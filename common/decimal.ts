/**
 * The one decimal type of Meterline's JS code. decimal.js rounds every result to `precision`
 * significant digits, 20 by default: an AVG of values with 29 integer digits and 9 decimals, a
 * sum of such values (up to 67 integer digits, see sql/README.md "Range of values") or a price
 * times such a quantity would silently lose digits. This clone keeps 200 significant digits, so
 * sums and products of stored values (at most 76 digits each) are exact and a quotient is exact
 * to far beyond the 9 decimals it is rounded to; `toString()` never uses exponent notation.
 *
 * Import `Decimal` from here, never from 'decimal.js' (the pricing core clones it with more
 * digits still, rater/pricing/decimal.ts).
 */
import { Decimal as BaseDecimal } from 'decimal.js';

export const DECIMAL_PRECISION = 200;

export const Decimal = BaseDecimal.clone({ precision: DECIMAL_PRECISION, rounding: BaseDecimal.ROUND_HALF_UP, toExpNeg: -9e15, toExpPos: 9e15 });
export type Decimal = BaseDecimal;
// eslint-disable-next-line @typescript-eslint/no-namespace
export declare namespace Decimal {
  type Rounding = BaseDecimal.Rounding;
  type Value = BaseDecimal.Value;
  type Config = BaseDecimal.Config;
  type Constructor = BaseDecimal.Constructor;
}
