import { AppError, ErrorCodes } from '../../common/errors.ts';

/**
 * Errors of the Stripe sync and the retry decision. Pure: no I/O.
 *
 * `StripeSyncError` is an `AppError` with one of the `STRIPE_*` codes (documented in
 * docs/errors.md): STRIPE_INVOICE_INVALID (nothing was sent), STRIPE_REJECTED (Stripe refused a
 * request: bad customer, bad parameter, key reused with other parameters, auth),
 * STRIPE_UNAVAILABLE (unreachable, overloaded or failing through every attempt: safe to retry
 * later), STRIPE_TOTAL_MISMATCH (the draft is left unfinalized for a person to look at),
 * STRIPE_INVOICE_CONFLICT (voided or duplicated in Stripe; Meterline will not issue another).
 */
export const StripeSyncErrorCodes = {
  STRIPE_INVOICE_INVALID: ErrorCodes.STRIPE_INVOICE_INVALID,
  STRIPE_REJECTED: ErrorCodes.STRIPE_REJECTED,
  STRIPE_UNAVAILABLE: ErrorCodes.STRIPE_UNAVAILABLE,
  STRIPE_TOTAL_MISMATCH: ErrorCodes.STRIPE_TOTAL_MISMATCH,
  STRIPE_INVOICE_CONFLICT: ErrorCodes.STRIPE_INVOICE_CONFLICT,
} as const;

export type StripeSyncErrorCode = keyof typeof StripeSyncErrorCodes;

export class StripeSyncError extends AppError {
  declare readonly code: StripeSyncErrorCode;

  constructor(code: StripeSyncErrorCode, message: string, opts: { details?: Record<string, unknown>; cause?: unknown } = {}) {
    super(code, message, opts);
    this.name = 'StripeSyncError';
  }
}

export function isStripeSyncError(err: unknown): err is StripeSyncError {
  return err instanceof StripeSyncError;
}

/**
 * The fields of a stripe-node error we read. Matched by shape and `type` name rather than
 * `instanceof`, so an error from another copy of the package (ESM and CJS builds) classifies the same.
 */
export interface StripeErrorLike {
  type: string;
  message: string;
  statusCode?: number;
  code?: string;
  rawType?: string;
  param?: string;
  requestId?: string;
  headers?: Record<string, string>;
}

export function asStripeError(err: unknown): StripeErrorLike | undefined {
  if (!(err instanceof Error)) return undefined;
  const type = (err as { type?: unknown }).type;
  return typeof type === 'string' && type.startsWith('Stripe') ? (err as unknown as StripeErrorLike) : undefined;
}

/**
 * Whether repeating the same request (same idempotency key) can succeed:
 * - Stripe's `Stripe-Should-Retry` header, when present, decides (Stripe sets it false when the
 *   idempotency layer would only replay the same failure, true for lock timeouts);
 * - connection errors (nothing or half a response came back): yes;
 * - 429 (rate limits, `lock_timeout`) and 409 (another request with the same key in flight): yes;
 * - 5xx: yes;
 * - every other 4xx (invalid request, card, auth, permission, idempotency_error): no;
 * - anything that is not a Stripe error is a bug here: no.
 */
export function isRetryableStripeError(err: unknown): boolean {
  const e = asStripeError(err);
  if (!e) return false;
  const shouldRetry = e.headers?.['stripe-should-retry'];
  if (shouldRetry === 'true') return true;
  if (shouldRetry === 'false') return false;
  if (e.type === 'StripeConnectionError' || e.type === 'StripeRateLimitError') return true;
  if (e.type === 'StripeIdempotencyError') return false;
  const status = e.statusCode;
  if (status === undefined) return false;
  return status === 409 || status === 429 || status >= 500;
}

export interface RetryPolicy {
  /** Attempts in all, the first included (1 = never retry). */
  attempts: number;
  /** Delay before the first retry; doubles each time. */
  baseDelayMs: number;
  /** Cap on one delay. */
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseDelayMs: 500, maxDelayMs: 20_000 };

/**
 * Delay before retry number `retry` (1-based): `baseDelayMs * 2^(retry-1)`, capped, with the
 * upper half jittered (`random` in [0, 1)) so many pushers that failed together do not retry together.
 */
export function backoffDelayMs(retry: number, policy: RetryPolicy, random: number): number {
  const exp = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, retry - 1));
  return Math.round(exp / 2 + (exp / 2) * random);
}

/** One line on what Stripe said, for error messages. */
export function describeStripeError(e: StripeErrorLike): string {
  const parts = [e.rawType ?? e.type, e.code, e.statusCode !== undefined ? `HTTP ${e.statusCode}` : undefined, e.requestId ? `request ${e.requestId}` : undefined].filter(Boolean);
  return `${e.message || '(no message)'} (${parts.join(', ')})`;
}

/** Log-safe fields of a Stripe error (no request bodies, no keys). */
export function stripeErrorDetails(e: StripeErrorLike): Record<string, unknown> {
  return { stripeType: e.rawType ?? e.type, stripeCode: e.code, stripeStatus: e.statusCode, stripeParam: e.param, stripeRequestId: e.requestId };
}

/** The error a failed Stripe call surfaces as, after `attempts` attempts. */
export function toSyncError(err: unknown, what: string, attempts: number, details: Record<string, unknown>): StripeSyncError {
  if (isStripeSyncError(err)) return err;
  const e = asStripeError(err);
  if (!e) {
    const message = err instanceof Error ? err.message : String(err);
    return new StripeSyncError('STRIPE_REJECTED', `${what} failed: ${message}`, { cause: err, details: { ...details, attempts } });
  }
  const after = attempts > 1 ? ` after ${attempts} attempts` : '';
  if (isRetryableStripeError(err)) {
    return new StripeSyncError('STRIPE_UNAVAILABLE', `${what} failed${after}: ${describeStripeError(e)}; retry later (the same idempotency keys make it safe)`, {
      cause: err,
      details: { ...details, ...stripeErrorDetails(e), attempts },
    });
  }
  return new StripeSyncError('STRIPE_REJECTED', `Stripe rejected ${what}${after}: ${describeStripeError(e)}`, {
    cause: err,
    details: { ...details, ...stripeErrorDetails(e), attempts },
  });
}
