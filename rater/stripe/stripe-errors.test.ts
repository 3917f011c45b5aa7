import Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import { backoffDelayMs, isRetryableStripeError, toSyncError } from './stripe-errors.ts';

const E = Stripe.errors;
const raw = (statusCode: number | undefined, extra: Record<string, unknown> = {}) => ({ message: 'boom', statusCode, ...extra });

describe('isRetryableStripeError', () => {
  it.each([
    ['connection error', new E.StripeConnectionError({ message: 'socket hang up' }), true],
    ['429 rate limit', new E.StripeRateLimitError(raw(429, { code: 'rate_limit' })), true],
    ['429 lock_timeout', new E.StripeRateLimitError(raw(429, { code: 'lock_timeout' })), true],
    ['500', new E.StripeAPIError(raw(500)), true],
    ['503', new E.StripeAPIError(raw(503)), true],
    ['409 concurrent idempotent request', new E.StripeAPIError(raw(409)), true],
    ['400 invalid request', new E.StripeInvalidRequestError(raw(400)), false],
    ['404 missing', new E.StripeInvalidRequestError(raw(404)), false],
    ['400 idempotency_error', new E.StripeIdempotencyError(raw(400, { type: 'idempotency_error' })), false],
    ['402 card error', new E.StripeCardError(raw(402)), false],
    ['401 auth', new E.StripeAuthenticationError(raw(401)), false],
    ['403 permission', new E.StripePermissionError(raw(403)), false],
    ['500 with Stripe-Should-Retry: false', new E.StripeAPIError(raw(500, { headers: { 'stripe-should-retry': 'false' } })), false],
    ['400 with Stripe-Should-Retry: true', new E.StripeInvalidRequestError(raw(400, { headers: { 'stripe-should-retry': 'true' } })), true],
    ['a plain Error (a bug)', new Error('x'), false],
    ['a string', 'x', false],
  ])('%s → %s', (_name, err, retryable) => {
    expect(isRetryableStripeError(err)).toBe(retryable);
  });
});

describe('backoffDelayMs', () => {
  const policy = { attempts: 10, baseDelayMs: 100, maxDelayMs: 1000 };
  it.each([
    [1, 0, 50],
    [1, 0.999999, 100],
    [2, 0, 100],
    [3, 0.5, 300],
    [4, 1, 800],
    [5, 1, 1000],
    [9, 0, 500],
  ])('retry %i with random %f waits %i ms', (retry, random, ms) => {
    expect(backoffDelayMs(retry, policy, random)).toBe(ms);
  });
  it('never decreases as retries go on (same random)', () => {
    for (let r = 1; r < 20; r++) expect(backoffDelayMs(r + 1, policy, 0.3)).toBeGreaterThanOrEqual(backoffDelayMs(r, policy, 0.3));
  });
});

describe('toSyncError', () => {
  it('names what failed and what Stripe said', () => {
    const err = toSyncError(new E.StripeInvalidRequestError({ message: "No such customer: 'cus_x'", statusCode: 400, code: 'resource_missing', type: 'invalid_request_error', param: 'customer', requestId: 'req_1' }), 'invoices.create', 1, { meterlineInvoiceId: 'inv_1' });
    expect(err).toMatchObject({ code: 'STRIPE_REJECTED', retryable: false });
    expect(err.message).toBe("Stripe rejected invoices.create: No such customer: 'cus_x' (invalid_request_error, resource_missing, HTTP 400, request req_1)");
    expect(err.details).toEqual({ meterlineInvoiceId: 'inv_1', stripeType: 'invalid_request_error', stripeCode: 'resource_missing', stripeStatus: 400, stripeParam: 'customer', stripeRequestId: 'req_1', attempts: 1 });
  });
  it('marks exhausted transient failures retryable', () => {
    const err = toSyncError(new E.StripeAPIError({ message: 'oops', statusCode: 502 }), 'invoices.finalizeInvoice', 5, {});
    expect(err).toMatchObject({ code: 'STRIPE_UNAVAILABLE', retryable: true, httpStatus: 503 });
    expect(err.message).toMatch(/failed after 5 attempts/);
  });
});
