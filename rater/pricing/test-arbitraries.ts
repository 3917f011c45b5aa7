/**
 * fast-check arbitraries shared by the pricing tests (test-only; nothing in the core imports it).
 * Decimals are generated as strings from integers and a scale, so they are exact by construction.
 */
import fc from 'fast-check';
import { D, fmt } from './decimal.ts';
import type { PercentageTier, Price, QuantityTransform, Tier } from './types.ts';

/** A non-negative decimal string with up to `maxScale` decimals and at most `maxInt` before the point. */
export function decimal(maxInt = 1_000_000, maxScale = 4): fc.Arbitrary<string> {
  return fc
    .tuple(fc.bigInt({ min: 0n, max: BigInt(maxInt) * 10n ** BigInt(maxScale) }), fc.integer({ min: 0, max: maxScale }))
    .map(([n, scale]) => fmt(new D(n.toString()).div(new D(10).pow(scale))));
}

export const quantity = fc.oneof(decimal(1_000_000, 3), fc.integer({ min: 0, max: 5000 }).map(String), fc.constant('0'));
export const price = decimal(100, 6);

/** 1 to 5 tiers with strictly ascending bounds and an unbounded last tier. */
export const tiers: fc.Arbitrary<Tier[]> = fc
  .tuple(
    fc.uniqueArray(decimal(10_000, 2).filter((s) => s !== '0'), { minLength: 0, maxLength: 4 }),
    fc.array(fc.record({ unitPrice: price, flatFee: fc.option(decimal(1000, 2), { nil: undefined }) }), { minLength: 5, maxLength: 5 }),
  )
  .map(([bounds, prices]) => {
    const sorted = [...bounds].sort((a, b) => new D(a).comparedTo(new D(b)));
    return [...sorted, null].map((upTo, i) => {
      const p = prices[i] as { unitPrice: string; flatFee: string | undefined };
      return { upTo, unitPrice: p.unitPrice, ...(p.flatFee !== undefined ? { flatFee: p.flatFee } : {}) };
    });
  });

/** 1 to 5 percentage tiers (graduated_percentage) with the same bounds as `tiers`. */
export const percentageTiers: fc.Arbitrary<PercentageTier[]> = fc
  .tuple(tiers, fc.array(decimal(100, 3).filter((s) => new D(s).lte(100)), { minLength: 5, maxLength: 5 }))
  .map(([ts, rates]) => ts.map((t, i) => ({ upTo: t.upTo, rate: rates[i] as string, ...(t.flatFee !== undefined ? { flatFee: t.flatFee } : {}) })));

const positive = decimal(1000, 2).filter((s) => s !== '0');
/** Every transform the schema accepts: divide or multiply, every rounding; `none` divides only by 2s and 5s. */
export const transform: fc.Arbitrary<QuantityTransform> = fc.oneof(
  fc.record({ divideBy: positive, round: fc.constantFrom('up' as const, 'down' as const, 'half_up' as const) }),
  fc.record({ divideBy: fc.constantFrom('1000', '1024', '0.5', '8', '1e6'), round: fc.constant('none' as const) }),
  fc.record({ multiplyBy: positive, round: fc.constantFrom('up' as const, 'down' as const, 'half_up' as const, 'none' as const) }),
);

const common = fc.record({ includedUnits: decimal(1000, 2), transform }, { requiredKeys: [] });

export const quantityPrice: fc.Arbitrary<Price> = fc.oneof(
  fc.tuple(common, price).map(([c, unitPrice]): Price => ({ model: 'per_unit', unitPrice, ...c })),
  fc
    .tuple(common, decimal(1000, 2).filter((s) => s !== '0'), price, fc.constantFrom('up' as const, 'down' as const))
    .map(([c, packageSize, packagePrice, round]): Price => ({ model: 'package', packageSize, packagePrice, round, ...c })),
  fc.tuple(common, tiers).map(([c, t]): Price => ({ model: 'graduated', tiers: t, ...c })),
  fc.tuple(common, tiers).map(([c, t]): Price => ({ model: 'volume', tiers: t, ...c })),
);

export const percentagePrice: fc.Arbitrary<Extract<Price, { model: 'percentage' }>> = fc
  .record(
    {
      rate: decimal(100, 3).filter((s) => new D(s).lte(100)),
      fixedFeePerEvent: decimal(10, 2),
      freeEvents: fc.integer({ min: 0, max: 5 }),
      freeAmount: decimal(1000, 2),
      perEventMin: decimal(5, 2),
      perEventMax: decimal(50, 2),
    },
    { requiredKeys: ['rate'] },
  )
  .map((p) => {
    if (p.perEventMin !== undefined && p.perEventMax !== undefined && new D(p.perEventMax).lt(new D(p.perEventMin))) {
      return { model: 'percentage' as const, ...p, perEventMax: p.perEventMin };
    }
    return { model: 'percentage' as const, ...p };
  });

export const eventValues = fc.array(decimal(10_000, 2), { maxLength: 30 });

export const graduatedPercentagePrice: fc.Arbitrary<Price> = percentageTiers.map((t): Price => ({ model: 'graduated_percentage', tiers: t }));

/** Any price but dimensional, with a minimum and/or maximum spend (minimum ≤ maximum) half of the time. */
export const boundedPrice: fc.Arbitrary<Price> = fc
  .tuple(fc.oneof(quantityPrice, graduatedPercentagePrice, percentagePrice), fc.option(decimal(500, 2), { nil: undefined }), fc.option(decimal(500, 2), { nil: undefined }))
  .map(([p, a, b]): Price => {
    const [min, max] = a !== undefined && b !== undefined && new D(b).lt(a) ? [b, a] : [a, b];
    return { ...p, ...(min !== undefined ? { minimumAmount: min } : {}), ...(max !== undefined ? { maximumAmount: max } : {}) } as Price;
  });
