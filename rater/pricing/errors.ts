/**
 * The pricing core's one error type. It is thrown for configuration and input errors the caller
 * must fix (a price that fails validation, a dimension value nobody priced, a quantity that is not
 * a decimal, an unknown currency); `issues` names each offending field and the reason, and every
 * issue is also a line of `message`. A breakdown that does not add up throws a plain Error: that
 * is a bug, never an input problem.
 */
export const PricingErrorCodes = {
  /** The price JSON failed validation (`parsePrice`); one issue per field. */
  PRICE_INVALID: 'the price definition is invalid',
  /** A dimensional price met a dimension value that has no price and the price has no `default`. */
  PRICE_DIMENSION_UNPRICED: 'a dimension value has no price and there is no default',
  /** The quantity, per-event values or per-dimension input are missing, not decimals, or negative. */
  RATE_INPUT_INVALID: 'the rating input is invalid',
  /** Not an ISO 4217 code in Meterline's table (see money.ts). */
  CURRENCY_UNKNOWN: 'unknown currency',
} as const;

export type PricingErrorCode = keyof typeof PricingErrorCodes;

export interface PricingIssue {
  /** Where: a field path such as `tiers[1].upTo`, a dimension value, or `quantity`. */
  path: string;
  /** Why, in words a price author can act on. */
  message: string;
}

export class PricingError extends Error {
  readonly code: PricingErrorCode;
  readonly issues: PricingIssue[];

  constructor(code: PricingErrorCode, summary: string, issues: PricingIssue[] = []) {
    super(issues.length === 0 ? summary : `${summary}:\n${issues.map((i) => `  - ${i.path}: ${i.message}`).join('\n')}`);
    this.name = 'PricingError';
    this.code = code;
    this.issues = issues;
  }
}

export function isPricingError(err: unknown): err is PricingError {
  return err instanceof PricingError;
}
