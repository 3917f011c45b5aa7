/**
 * The pricing core: pure functions, no I/O. `rate(price, input)` prices a quantity (or per-event
 * values, or usage per dimension value) and explains the exact, unrounded amount row by row; the
 * invoice line rounds it once with `roundMoney`. `parsePrice` / `PriceSchema` validate a price
 * JSON. The model is picked here, in one place (as Lago's charge_models/factory.rb does); each
 * model lives in its own file with its own table test. See README.md for the price format.
 */
import { D, fmt, sum, type Dec, type ModelResult } from './decimal.ts';
import { rateDimensional } from './dimensional.ts';
import { rateGraduated } from './graduated.ts';
import { rateGraduatedPercentage } from './graduated-percentage.ts';
import { inputDecimal } from './input.ts';
import { ratePackage } from './package.ts';
import { ratePercentage } from './percentage.ts';
import { ratePerUnit } from './per-unit.ts';
import { applySpendLimits } from './spend-limits.ts';
import { applyQuantityTransform } from './transform.ts';
import type { BreakdownRow, Price, QuantityPrice, RateInput, RateResult } from './types.ts';
import { rateVolume } from './volume.ts';

export type * from './types.ts';
export { PricingError, PricingErrorCodes, isPricingError, type PricingErrorCode, type PricingIssue } from './errors.ts';
export { PriceSchema, PriceModels, parsePrice, priceIssues } from './schema.ts';
export { CurrencyMinorUnits, RoundingModes, minorUnits, normalizeCurrency, roundMoney, toMinor, type RoundingMode } from './money.ts';
export { parseByDimensionText, parseValuesText } from './input.ts';

/**
 * Prices `input` with `price`. The result's `amount` is exact (not rounded) and equals the sum of
 * the breakdown rows' amounts. Throws PricingError for input the caller must fix (see errors.ts).
 */
export function rate(price: Price, input: RateInput): RateResult {
  let result: { amount: string; billedQuantity: string; breakdown: BreakdownRow[] };
  switch (price.model) {
    case 'per_unit':
      result = rateQuantity(price, input, ratePerUnit);
      break;
    case 'package':
      result = rateQuantity(price, input, ratePackage);
      break;
    case 'graduated':
      result = rateQuantity(price, input, rateGraduated);
      break;
    case 'volume':
      result = rateQuantity(price, input, rateVolume);
      break;
    case 'graduated_percentage': {
      // The summed amount: the quantity, or the per-event amounts added up when they are given.
      const total = input.values ? sum(input.values.map((v, i) => inputDecimal(v, `values[${i}]`))) : inputDecimal(input.quantity, 'quantity');
      const r = rateGraduatedPercentage(price, total);
      result = { amount: fmt(r.amount), billedQuantity: fmt(total), breakdown: r.rows };
      break;
    }
    case 'percentage': {
      const values = input.values?.map((v, i) => inputDecimal(v, `values[${i}]`));
      const quantity = values ? new D(0) : inputDecimal(input.quantity, 'quantity');
      const r = ratePercentage(price, { quantity, ...(values ? { values } : {}) });
      result = { amount: fmt(r.amount), billedQuantity: fmt(r.billedQuantity), breakdown: r.rows };
      break;
    }
    case 'dimensional': {
      const r = rateDimensional(price, input, rate);
      result = { amount: fmt(r.amount), billedQuantity: r.billedQuantity, breakdown: r.rows };
      break;
    }
    default: {
      const unknown: never = price;
      throw new Error(`unknown price model ${JSON.stringify((unknown as { model?: unknown }).model)}`);
    }
  }
  // Minimum and maximum spend bound what the model gave, each as its own row (spend-limits.ts).
  const limited = applySpendLimits(price, new D(result.amount));
  if (limited.rows.length > 0) result = { ...result, amount: fmt(limited.amount), breakdown: [...result.breakdown, ...limited.rows] };
  // Guarantee 5: the amount is explained. A mismatch is a bug in a model, never an input problem.
  const rowsTotal = sum(result.breakdown.map((r) => new D(r.amount)));
  if (!rowsTotal.eq(new D(result.amount))) {
    throw new Error(`pricing bug: ${price.model} breakdown sums to ${fmt(rowsTotal)} but the amount is ${result.amount}`);
  }
  return result;
}

/** The quantity models: transform and included units first (transform.ts), then the model. */
function rateQuantity<P extends QuantityPrice>(price: P, input: RateInput, model: (price: P, billedQuantity: Dec) => ModelResult): RateResult {
  const { billedQuantity, rows } = applyQuantityTransform(price, inputDecimal(input.quantity, 'quantity'));
  const r = model(price, billedQuantity);
  return { amount: fmt(r.amount), billedQuantity: fmt(billedQuantity), breakdown: [...rows, ...r.rows] };
}
