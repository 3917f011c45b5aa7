/**
 * One error type for the whole system. `code` is `<AREA>_<REASON>` and is documented in
 * docs/errors.md; `details` must be safe to log and to send to the client.
 */
export const ErrorCodes = {
  CONFIG_INVALID: { httpStatus: 500, retryable: false },
  AUTH_MISSING: { httpStatus: 401, retryable: false },
  AUTH_INVALID: { httpStatus: 401, retryable: false },
  AUTH_FORBIDDEN: { httpStatus: 403, retryable: false },
  REQUEST_INVALID: { httpStatus: 400, retryable: false },
  INGEST_INVALID_EVENTS: { httpStatus: 400, retryable: false },
  INGEST_MALFORMED_JSON: { httpStatus: 400, retryable: false },
  INGEST_UNSUPPORTED_MEDIA_TYPE: { httpStatus: 415, retryable: false },
  INGEST_BODY_TOO_LARGE: { httpStatus: 413, retryable: false },
  INGEST_BATCH_TOO_LONG: { httpStatus: 413, retryable: false },
  INGEST_UNAVAILABLE: { httpStatus: 503, retryable: true },
  INGEST_OVERLOADED: { httpStatus: 429, retryable: true },
  METER_NOT_FOUND: { httpStatus: 404, retryable: false },
  METER_EXISTS: { httpStatus: 409, retryable: false },
  CATALOG_CONFLICT: { httpStatus: 409, retryable: true },
  DEADLETTER_NOT_FOUND: { httpStatus: 404, retryable: false },
  QUERY_INVALID: { httpStatus: 400, retryable: false },
  USAGE_QUERY_TOO_LARGE: { httpStatus: 400, retryable: false },
  USAGE_QUERY_TIMEOUT: { httpStatus: 503, retryable: true },
  INGEST_IDEMPOTENCY_CONFLICT: { httpStatus: 409, retryable: false },
  STORE_UNAVAILABLE: { httpStatus: 503, retryable: true },
  STORE_LOCKED: { httpStatus: 503, retryable: false },
  REPAIR_BUSY: { httpStatus: 503, retryable: true },
  REPAIR_UNAVAILABLE: { httpStatus: 503, retryable: false },
  NOT_FOUND: { httpStatus: 404, retryable: false },
  STRIPE_INVOICE_INVALID: { httpStatus: 422, retryable: false },
  STRIPE_REJECTED: { httpStatus: 502, retryable: false },
  STRIPE_UNAVAILABLE: { httpStatus: 503, retryable: true },
  STRIPE_TOTAL_MISMATCH: { httpStatus: 409, retryable: false },
  STRIPE_INVOICE_CONFLICT: { httpStatus: 409, retryable: false },
  INTERNAL: { httpStatus: 500, retryable: false },
} as const satisfies Record<string, { httpStatus: number; retryable: boolean }>;

export type ErrorCode = keyof typeof ErrorCodes;

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly httpStatus: number;
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, opts: { details?: Record<string, unknown>; cause?: unknown; httpStatus?: number } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'AppError';
    this.code = code;
    this.httpStatus = opts.httpStatus ?? ErrorCodes[code].httpStatus;
    this.retryable = ErrorCodes[code].retryable;
    this.details = opts.details;
  }
}

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}

/** Message of any thrown value, for logs. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
