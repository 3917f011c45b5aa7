/**
 * Package: units are sold in packages of `packageSize` for `packagePrice` each. A partial package
 * is billed in full by default (`round: 'up'`, ceil(quantity / packageSize)); `round: 'down'`
 * bills only complete packages. Quantity 0 is 0 packages. Fractional quantities are allowed.
 */
import { D, fmt, type Dec, type ModelResult } from './decimal.ts';
import { divideToWhole } from './transform.ts';
import type { PackagePrice } from './types.ts';

export function ratePackage(price: PackagePrice, quantity: Dec): ModelResult {
  const round = price.round ?? 'up';
  const packages = divideToWhole(quantity, new D(price.packageSize), round);
  const amount = packages.times(new D(price.packagePrice));
  const partial = round === 'up' ? 'a partial package is billed in full' : 'a partial package is not billed';
  return {
    amount,
    rows: [
      {
        description: `${fmt(quantity)} units in packages of ${price.packageSize} (${partial}): ${fmt(packages)} × ${price.packagePrice}`,
        units: fmt(packages),
        unitPrice: price.packagePrice,
        amount: fmt(amount),
      },
    ],
  };
}
