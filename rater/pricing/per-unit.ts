/** Per unit: every billed unit costs `unitPrice`; linear in the quantity. */
import { D, fmt, type Dec, type ModelResult } from './decimal.ts';
import type { PerUnitPrice } from './types.ts';

export function ratePerUnit(price: PerUnitPrice, quantity: Dec): ModelResult {
  const amount = quantity.times(new D(price.unitPrice));
  return {
    amount,
    rows: [{ description: `${fmt(quantity)} × ${price.unitPrice}`, units: fmt(quantity), unitPrice: price.unitPrice, amount: fmt(amount) }],
  };
}
