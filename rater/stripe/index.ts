export { StripeSync, ReconcileProblems, type StripeSyncOptions, type PushResult, type ReconcileRow, type ReconcileProblem } from './stripe-sync.ts';
export { createStripeClient, type StripeClientOptions } from './client.ts';
export { planPush, idempotencyKey, MetadataKeys, STRIPE_LIMITS, type PushPlan, type PlannedItem, type PlanResult } from './push-plan.ts';
export {
  StripeSyncError,
  StripeSyncErrorCodes,
  isStripeSyncError,
  isRetryableStripeError,
  backoffDelayMs,
  DEFAULT_RETRY,
  type StripeSyncErrorCode,
  type RetryPolicy,
} from './stripe-errors.ts';
