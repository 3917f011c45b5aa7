/**
 * Price definitions and rating results. Pure data: every number is a decimal string (never a
 * JS float). `rate(price, input)` in ./index.ts turns a quantity (or per-event values) into an
 * exact, unrounded amount and the breakdown that explains it; the invoice rounds once per line.
 */

/** One tier of a graduated or volume price. `upTo` is inclusive; null means "and above". */
export interface Tier {
  upTo: string | null;
  /** Price per unit within this tier. */
  unitPrice: string;
  /**
   * Fixed fee added once when the tier is reached (graduated) or selected (volume). The first tier
   * is always reached, even at quantity 0 (Stripe's "flat amount for the entire tier").
   */
  flatFee?: string;
}

/** One tier of a graduated percentage price: `rate` percent (0..100) of the amount within the tier, plus `flatFee` once when the tier is reached. */
export interface PercentageTier {
  upTo: string | null;
  rate: string;
  flatFee?: string;
}

/**
 * How a transformed quantity is rounded: `up`, `down`, `half_up` to a whole number; `none` keeps
 * the exact product or quotient (only where it is always a finite decimal: see transform.ts).
 */
export type TransformRounding = 'up' | 'down' | 'half_up' | 'none';

/**
 * Applied to the quantity before pricing: divide by `divideBy` (Stripe's transform_quantity) or
 * multiply by `multiplyBy` (OpenMeter's unit config), then round as `round` says.
 */
export type QuantityTransform = { divideBy: string; round: TransformRounding } | { multiplyBy: string; round: TransformRounding };

export interface PriceCommon {
  /** Units free of charge, deducted from the quantity (after any transform) before pricing. */
  includedUnits?: string;
  transform?: QuantityTransform;
}

/**
 * A floor and a cap on one charge's amount per rating (OpenMeter's `minimumAmount` /
 * `maximumAmount` commitments): applied after the model, each shown as its own breakdown row.
 */
export interface SpendLimits {
  minimumAmount?: string;
  maximumAmount?: string;
}

export type Price =
  | (PriceCommon & SpendLimits & { model: 'per_unit'; unitPrice: string })
  /** Units are billed in packages of `packageSize` for `packagePrice`; partial packages round up (default) or down. */
  | (PriceCommon & SpendLimits & { model: 'package'; packageSize: string; packagePrice: string; round?: 'up' | 'down' })
  | (PriceCommon & SpendLimits & { model: 'graduated'; tiers: Tier[] })
  | (PriceCommon & SpendLimits & { model: 'volume'; tiers: Tier[] })
  /** Lago's graduated percentage: the summed amount fills the tiers; each tier takes its rate of the amount within it, plus its flat fee once reached. */
  | (SpendLimits & { model: 'graduated_percentage'; tiers: PercentageTier[] })
  /**
   * Lago's percentage charge: `rate` percent (0..100) of each event's amount plus `fixedFeePerEvent`
   * per event. Free units open the period: events are free (no rate, no fixed fee) while fewer than
   * `freeEvents` events have passed and their running total stays below `freeAmount` (either limit
   * alone, if only one is set); the event that uses up `freeAmount` pays the rate on its part above
   * it plus the fixed fee. `perEventMin`/`perEventMax` bound each charged event's fee (percentage +
   * fixed fee). The full order is in ./percentage.ts.
   */
  | (SpendLimits & { model: 'percentage'; rate: string; fixedFeePerEvent?: string; freeEvents?: number; freeAmount?: string; perEventMin?: string; perEventMax?: string })
  /** A price per value of a group-by dimension (e.g. per model); `default` prices values not listed. */
  | (SpendLimits & { model: 'dimensional'; dimension: string; prices: Record<string, Price>; default?: Price });

export type PriceModel = Price['model'];

export type PerUnitPrice = Extract<Price, { model: 'per_unit' }>;
export type PackagePrice = Extract<Price, { model: 'package' }>;
export type GraduatedPrice = Extract<Price, { model: 'graduated' }>;
export type VolumePrice = Extract<Price, { model: 'volume' }>;
export type PercentagePrice = Extract<Price, { model: 'percentage' }>;
export type GraduatedPercentagePrice = Extract<Price, { model: 'graduated_percentage' }>;
export type DimensionalPrice = Extract<Price, { model: 'dimensional' }>;
/** The models that price one quantity (and so take `transform` and `includedUnits`). */
export type QuantityPrice = PerUnitPrice | PackagePrice | GraduatedPrice | VolumePrice;

export interface RateInput {
  /**
   * The rolled-up quantity for the period (for every model but percentage and dimensional; a
   * percentage price without per-event fees may take the summed amount here instead of `values`;
   * graduated_percentage takes the summed amount here, or the sum of `values` when they are given).
   */
  quantity: string;
  /** Per-event amounts, in event order (percentage model); when given, `quantity` is ignored. */
  values?: string[];
  /** Quantity per value of the dimension (dimensional model); values of other models are ignored. */
  byDimension?: Record<string, { quantity: string; values?: string[] }>;
}

/** One row of the explanation of an amount: e.g. a tier, a package count, a fee. */
export interface BreakdownRow {
  description: string;
  /**
   * What this row counts (after transforms / included units): usage units for tiers and per-unit
   * rows, packages for the package row, events for a per-event fee, the amount a percentage applies to.
   * When `unitPrice` is set, `amount` = `units` × `unitPrice` + (`flatFee` ?? 0).
   */
  units: string;
  /** Price per unit in this row, if it has one. */
  unitPrice?: string;
  /** A fixed fee in this row, if any. */
  flatFee?: string;
  /** Exact, unrounded amount of this row. */
  amount: string;
  /** For dimensional prices: the dimension value this row belongs to. */
  dimensionValue?: string;
  /** For graduated/volume tiers: the tier's bounds, e.g. "1–1000", "1001–∞" (or "(0.5, 2]" for fractional bounds). */
  tier?: string;
}

export interface RateResult {
  /** Exact, unrounded amount (the sum of the breakdown rows). */
  amount: string;
  /**
   * Quantity billed after transform and included units (percentage: the amount the rate applied to,
   * after free units; dimensional: the sum over dimension values).
   */
  billedQuantity: string;
  breakdown: BreakdownRow[];
}
