/**
 * Dimensional: one price per value of a group-by dimension (e.g. `model` → gpt-4o, gpt-4o-mini).
 * Each value in the input is rated on its own by its listed price, or by `default` when it is not
 * listed; its rows carry `dimensionValue`, and the amount is the sum over values. Values are rated
 * in sorted order so the breakdown is stable. A value with neither a price nor a default is a
 * configuration error: rating throws PRICE_DIMENSION_UNPRICED naming every such value, rather than
 * silently billing it at 0. Listed values without usage produce no rows (and so no flat fees).
 */
import { D, fmt, sum, type ModelResult } from './decimal.ts';
import { PricingError } from './errors.ts';
import type { BreakdownRow, DimensionalPrice, Price, RateInput, RateResult } from './types.ts';

export function rateDimensional(price: DimensionalPrice, input: RateInput, rateOne: (price: Price, input: RateInput) => RateResult): ModelResult & { billedQuantity: string } {
  if (!input.byDimension) {
    throw new PricingError('RATE_INPUT_INVALID', `dimensional price needs the usage per ${price.dimension}`, [
      { path: 'byDimension', message: `required: the quantity per value of ${price.dimension}` },
    ]);
  }
  const entries = Object.entries(input.byDimension).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const unpriced = entries.filter(([value]) => !Object.hasOwn(price.prices, value) && !price.default).map(([value]) => value);
  if (unpriced.length > 0) {
    throw new PricingError(
      'PRICE_DIMENSION_UNPRICED',
      `${unpriced.length} value(s) of ${price.dimension} have no price and the price has no default`,
      unpriced.map((value) => ({ path: `${price.dimension}=${value}`, message: 'add it to prices, or add a default price' })),
    );
  }
  const rows: BreakdownRow[] = [];
  const amounts = [];
  const billed = [];
  for (const [value, usage] of entries) {
    const listed = Object.hasOwn(price.prices, value);
    const valuePrice = listed ? price.prices[value] : price.default;
    if (!valuePrice) throw new Error('unreachable: unpriced dimension value'); // checked above
    let result: RateResult;
    try {
      result = rateOne(valuePrice, { quantity: usage.quantity, ...(usage.values ? { values: usage.values } : {}) });
    } catch (err) {
      // Say which value's input was wrong: `byDimension.gpt-4o.quantity`, not just `quantity`.
      if (err instanceof PricingError) throw new PricingError(err.code, `${price.dimension}=${value}: ${err.message.split('\n')[0]}`, err.issues.map((i) => ({ ...i, path: `byDimension.${value}.${i.path}` })));
      throw err;
    }
    amounts.push(new D(result.amount));
    billed.push(new D(result.billedQuantity));
    for (const row of result.breakdown) {
      rows.push({ ...row, description: `${price.dimension}=${value}${listed ? '' : ' (default price)'}: ${row.description}`, dimensionValue: value });
    }
  }
  return { amount: sum(amounts), rows, billedQuantity: fmt(sum(billed)) };
}
