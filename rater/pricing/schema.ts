/**
 * Validation of a price JSON. `parsePrice` returns a Price or throws PRICE_INVALID listing every
 * problem as `<field path>: <reason>` (e.g. `tiers[1].upTo: must be greater than the previous
 * tier's upTo (1000)`). Rules:
 *
 *   - Amounts and quantities are decimal strings ("0.01", "1000"). An integer JSON number is
 *     accepted and kept as its string; a fractional JSON number is refused, because JSON.parse has
 *     already turned it into a float.
 *   - Prices, fees and included units are ≥ 0; packageSize, transform.divideBy and
 *     transform.multiplyBy are > 0; rate is a percentage in 0..100; perEventMin ≤ perEventMax;
 *     minimumAmount ≤ maximumAmount; freeEvents is a whole number ≥ 0.
 *   - A transform has exactly one of divideBy and multiplyBy; `round: "none"` with divideBy only
 *     when every quotient is a finite decimal (divideBy made of 2s and 5s: 1000, 1024, 0.5).
 *   - Tiers (graduated, volume, graduated_percentage): at least one; upTo ascending (strictly); only the last tier has upTo null, and it
 *     must (every quantity needs a tier). The first tier's upTo may be 0 (a free zero-usage tier).
 *   - Unknown fields are errors (a misspelt "upto" must not silently vanish).
 *   - A dimensional price's prices and default are any other model (no nesting).
 */
import { z } from 'zod';
import { D, toDecimal } from './decimal.ts';
import { PricingError, type PricingIssue } from './errors.ts';
import { dividesExactly } from './transform.ts';
import type { Price, QuantityTransform } from './types.ts';

export const PriceModels = ['per_unit', 'package', 'graduated', 'volume', 'graduated_percentage', 'percentage', 'dimensional'] as const;

type DecimalRule = 'nonNegative' | 'positive' | 'percent';

function decimalField(rule: DecimalRule, required = 'is required') {
  return z.unknown().transform((v, ctx): string => {
    const fail = (message: string) => {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message });
      return z.NEVER;
    };
    if (v === undefined) return fail(required);
    let s: string;
    if (typeof v === 'string') s = v;
    else if (typeof v === 'number') {
      if (!Number.isSafeInteger(v)) return fail(`write ${v} as a decimal string, e.g. "${v}": a fractional JSON number may already have lost precision`);
      s = String(v);
    } else return fail(`must be a decimal string such as "0.01", got ${v === null ? 'null' : typeof v}`);
    const d = toDecimal(s);
    if (!d) return fail(`"${s}" is not a decimal number (expected e.g. "12.5")`);
    if (rule === 'nonNegative' && d.isNegative()) return fail(`must not be negative (got ${s})`);
    if (rule === 'positive' && d.lte(0)) return fail(`must be greater than 0 (got ${s})`);
    if (rule === 'percent' && (d.isNegative() || d.gt(100))) return fail(`is a percentage and must be between 0 and 100 (got ${s})`);
    return s;
  });
}

const nonNegative = () => decimalField('nonNegative');

const TierSchema = z
  .object({
    upTo: z.null().or(decimalField('nonNegative', 'is required: a decimal string, or null for the last tier')),
    unitPrice: nonNegative(),
    flatFee: nonNegative().optional(),
  })
  .strict();

const PercentageTierSchema = z
  .object({
    upTo: z.null().or(decimalField('nonNegative', 'is required: a decimal string, or null for the last tier')),
    rate: decimalField('percent'),
    flatFee: nonNegative().optional(),
  })
  .strict();

const tiersOf = <T extends z.ZodTypeAny>(tier: T) => z
  .array(tier)
  .min(1, 'needs at least one tier')
  .superRefine((tiers: { upTo: unknown }[], ctx) => {
    let previous: { upTo: string; index: number } | undefined;
    tiers.forEach((tier, i) => {
      const last = i === tiers.length - 1;
      if (tier.upTo === null) {
        if (!last) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [i, 'upTo'], message: 'only the last tier may have upTo null' });
        return;
      }
      if (typeof tier.upTo !== 'string' || !toDecimal(tier.upTo)) return; // reported by the field
      if (last) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [i, 'upTo'], message: 'the last tier must have upTo null, so that every quantity has a tier' });
      if (previous && new D(tier.upTo).lte(new D(previous.upTo))) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: [i, 'upTo'], message: `must be greater than the previous tier's upTo (${previous.upTo}): tiers are ascending` });
      }
      previous = { upTo: tier.upTo, index: i };
    });
  });

const TiersSchema = tiersOf(TierSchema);

const TransformSchema = z
  .object({ divideBy: decimalField('positive').optional(), multiplyBy: decimalField('positive').optional(), round: z.enum(['up', 'down', 'half_up', 'none']) })
  .strict()
  .superRefine((t, ctx) => {
    if (t.divideBy === undefined && t.multiplyBy === undefined) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['divideBy'], message: 'is required: give divideBy (e.g. "60": minutes to hours) or multiplyBy (e.g. "1.2")' });
    }
    if (t.divideBy !== undefined && t.multiplyBy !== undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['multiplyBy'], message: 'give divideBy or multiplyBy, not both' });
    const divisor = typeof t.divideBy === 'string' ? toDecimal(t.divideBy) : undefined;
    if (t.round === 'none' && divisor && !dividesExactly(divisor)) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['round'],
        message: `"none" keeps the exact quotient, but ${t.divideBy} has a prime factor other than 2 and 5, so e.g. 1 ÷ ${t.divideBy} never ends: round "up", "down" or "half_up", or use a divideBy such as 1000 or 1024`,
      });
    }
  })
  .transform((t): QuantityTransform => (t.multiplyBy !== undefined ? { multiplyBy: t.multiplyBy, round: t.round } : { divideBy: t.divideBy as string, round: t.round }));

const common = {
  includedUnits: nonNegative().optional(),
  transform: TransformSchema.optional(),
};

/** Minimum and maximum spend of one charge (spend-limits.ts), on every model. */
const spend = {
  minimumAmount: nonNegative().optional(),
  maximumAmount: nonNegative().optional(),
};

const PerUnitSchema = z.object({ model: z.literal('per_unit'), unitPrice: nonNegative(), ...common, ...spend }).strict();
const PackageSchema = z
  .object({ model: z.literal('package'), packageSize: decimalField('positive'), packagePrice: nonNegative(), round: z.enum(['up', 'down']).optional(), ...common, ...spend })
  .strict();
const GraduatedSchema = z.object({ model: z.literal('graduated'), tiers: TiersSchema, ...common, ...spend }).strict();
const VolumeSchema = z.object({ model: z.literal('volume'), tiers: TiersSchema, ...common, ...spend }).strict();
const GraduatedPercentageSchema = z.object({ model: z.literal('graduated_percentage'), tiers: tiersOf(PercentageTierSchema), ...spend }).strict();
const PercentageSchema = z
  .object({
    model: z.literal('percentage'),
    rate: decimalField('percent'),
    fixedFeePerEvent: nonNegative().optional(),
    freeEvents: z.number({ invalid_type_error: 'must be a whole number of events' }).int('must be a whole number of events').nonnegative('must not be negative').optional(),
    freeAmount: nonNegative().optional(),
    perEventMin: nonNegative().optional(),
    perEventMax: nonNegative().optional(),
    ...spend,
  })
  .strict();

const modelError = (allowed: readonly string[], nested: boolean): z.ZodErrorMap => (issue, ctx) => {
  if (issue.code === z.ZodIssueCode.invalid_union_discriminator) {
    const got = (ctx.data as { model?: unknown } | undefined)?.model;
    if (nested && got === 'dimensional') return { message: 'a dimensional price cannot contain another dimensional price' };
    return { message: `must be one of ${allowed.join(', ')}${got === undefined ? '' : ` (got ${JSON.stringify(got)})`}` };
  }
  return { message: ctx.defaultError };
};

/** Checks across fields, which discriminatedUnion cannot take on its members. */
function crossFieldChecks(
  p: { model?: unknown; perEventMin?: unknown; perEventMax?: unknown; minimumAmount?: unknown; maximumAmount?: unknown; prices?: unknown; default?: unknown },
  ctx: z.RefinementCtx,
) {
  const minSpend = typeof p.minimumAmount === 'string' ? toDecimal(p.minimumAmount) : undefined;
  const maxSpend = typeof p.maximumAmount === 'string' ? toDecimal(p.maximumAmount) : undefined;
  if (minSpend && maxSpend && maxSpend.lt(minSpend)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['maximumAmount'], message: `must be at least minimumAmount (${String(p.minimumAmount)})` });
  if (p.model === 'percentage') {
    const min = typeof p.perEventMin === 'string' ? toDecimal(p.perEventMin) : undefined;
    const max = typeof p.perEventMax === 'string' ? toDecimal(p.perEventMax) : undefined;
    if (min && max && max.lt(min)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['perEventMax'], message: `must be at least perEventMin (${String(p.perEventMin)})` });
  }
  if (p.model === 'dimensional' && p.prices && typeof p.prices === 'object') {
    const values = Object.keys(p.prices);
    if (values.length === 0 && !p.default) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['prices'], message: 'needs at least one price, or a default' });
  }
}

const LeafModels = ['per_unit', 'package', 'graduated', 'volume', 'graduated_percentage', 'percentage'] as const;
const LeafPriceSchema = z
  .discriminatedUnion('model', [PerUnitSchema, PackageSchema, GraduatedSchema, VolumeSchema, GraduatedPercentageSchema, PercentageSchema], { errorMap: modelError(LeafModels, true) })
  .superRefine(crossFieldChecks);

const DimensionalSchema = z
  .object({
    model: z.literal('dimensional'),
    dimension: z.string({ required_error: 'is required', invalid_type_error: 'must be the name of the dimension, a string' }).min(1, 'must not be empty'),
    prices: z.record(LeafPriceSchema),
    default: LeafPriceSchema.optional(),
    ...spend,
  })
  .strict();

/** A price JSON, validated; output is a `Price` with every amount as a decimal string. */
export const PriceSchema: z.ZodType<Price, z.ZodTypeDef, unknown> = z
  .discriminatedUnion('model', [PerUnitSchema, PackageSchema, GraduatedSchema, VolumeSchema, GraduatedPercentageSchema, PercentageSchema, DimensionalSchema], {
    errorMap: modelError(PriceModels, false),
  })
  .superRefine(crossFieldChecks);

function formatPath(path: (string | number)[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? p : `.${p}`;
  return out === '' ? '(price)' : out;
}

/** Messages a price author can act on, for zod's built-in issues. */
const errorMap: z.ZodErrorMap = (issue, ctx) => {
  switch (issue.code) {
    case z.ZodIssueCode.invalid_type:
      if (issue.received === 'undefined') return { message: 'is required' };
      return { message: `must be ${issue.expected === 'object' ? 'a JSON object' : issue.expected === 'array' ? 'an array' : `a ${issue.expected}`}, got ${issue.received}` };
    case z.ZodIssueCode.invalid_enum_value:
      return { message: `must be one of ${issue.options.map((o) => JSON.stringify(o)).join(', ')} (got ${JSON.stringify(issue.received)})` };
    default:
      return { message: ctx.defaultError };
  }
};

/** Every problem with a price JSON, as `{ path, message }`; empty when it is valid. */
export function priceIssues(json: unknown): PricingIssue[] {
  const r = PriceSchema.safeParse(json, { errorMap });
  if (r.success) return [];
  return r.error.issues.flatMap((i): PricingIssue[] =>
    i.code === z.ZodIssueCode.unrecognized_keys
      ? i.keys.map((k) => ({ path: formatPath([...i.path, k]), message: 'is not a field of this price model' }))
      : [{ path: formatPath(i.path), message: i.message }],
  );
}

/** The Price a JSON value describes, or throws PRICE_INVALID listing every field error. */
export function parsePrice(json: unknown): Price {
  const r = PriceSchema.safeParse(json, { errorMap });
  if (r.success) return r.data;
  const issues = priceIssues(json);
  throw new PricingError('PRICE_INVALID', `invalid price (${issues.length} problem${issues.length === 1 ? '' : 's'})`, issues);
}
