import { z } from 'zod';

/**
 * The response bodies api/ builds itself, as zod schemas; their types are what the routes return
 * and what the dashboard and portal read (web/src/types.ts). Pure: zod only. It imports no other
 * component (their index.ts loads server code, which the browser's type-check must not see);
 * shapes holding the rater's Invoice take it as a type parameter.
 */

/** GET /api/v1/whoami: the key making the request (never the key itself). */
export const WhoAmISchema = z.object({
  id: z.string(),
  name: z.string(),
  scopes: z.array(z.string()),
  prefix: z.string(),
});
export type WhoAmI = z.infer<typeof WhoAmISchema>;

/** One customer as the dashboard's Accounts page shows it: current period, usage so far, projection, open alerts. */
export const AccountSummarySchema = z.object({
  customer: z.object({ key: z.string(), name: z.string(), currency: z.string(), timeZone: z.string() }),
  /** The current billing period (subscription) or, without one, the calendar month in the customer's zone. */
  period: z.object({ start: z.string().datetime(), end: z.string().datetime(), source: z.enum(['subscription', 'calendar_month']) }),
  subscriptions: z.array(z.object({ id: z.string(), plan: z.string(), planName: z.string() })),
  /** Usage of every meter in [period.start, asOf), exact decimal strings ("0" when none). */
  usage: z.array(z.object({ meter: z.string(), name: z.string(), aggregation: z.string(), value: z.string().describe('exact decimal string') })),
  /** Sum over the customer's active subscriptions; null without one (or if it cannot be priced, with `projectedError`). */
  projected: z.object({ amountSoFar: z.string(), projectedTotal: z.string(), currency: z.string() }).nullable(),
  projectedError: z.string().optional(),
  /** Anomalies not resolved yet (open or acknowledged). */
  openAnomalies: z.number().int(),
  /** The worst severity among them, or null. */
  worstSeverity: z.string().nullable(),
});
export type AccountSummary = z.infer<typeof AccountSummarySchema>;

/** GET /api/v1/accounts: every customer; `asOf` is now rounded up to the minute. */
export const AccountsSchema = z.object({ asOf: z.string().datetime(), items: z.array(AccountSummarySchema) });
export type Accounts = z.infer<typeof AccountsSchema>;

/** One customer in GET /api/v1/accounts (served from the accounts cache): its summary as computed at `computedAt`. */
export const AccountRowSchema = AccountSummarySchema.extend({
  /** When this summary was computed (usage counted up to then, rounded up to the minute; projection at that instant). */
  computedAt: z.string().datetime(),
});
export type AccountRow = z.infer<typeof AccountRowSchema>;

/**
 * GET /api/v1/accounts: a page of the accounts cache. `asOf`: the last refresh; every change of
 * usage, catalog, anomalies or period seen by then is in the items. `refresh` says how that went.
 */
export const AccountsPageSchema = z.object({
  asOf: z.string().datetime(),
  items: z.array(AccountRowSchema),
  page: z.number().int(),
  pageSize: z.number().int(),
  totalCount: z.number().int(),
  refresh: z.object({
    /** How long the last successful refresh took, and how many customers it recomputed (all of them when `full`). */
    durationMs: z.number().int(),
    recomputed: z.number().int(),
    full: z.boolean(),
    /** The last refresh failed (the items are those of the refresh at `asOf`); null when it succeeded. */
    error: z.string().nullable(),
  }),
});
export type AccountsPage = z.infer<typeof AccountsPageSchema>;

/** GET /api/v1/accounts/{customer} and /api/v1/portal/account: one customer's summary with its `asOf`. */
export const AccountSchema = z.object({ asOf: z.string(), ...AccountSummarySchema.shape });
export type Account = z.infer<typeof AccountSchema>;

/** A customer-portal token as listed (never the token itself). */
export const PortalTokenRecordSchema = z.object({
  id: z.string(),
  /** The one customer (key = events' subject) this token shows. */
  customer: z.string(),
  name: z.string(),
  /** First characters of the token, to recognise it in listings. */
  prefix: z.string(),
  createdAt: z.string(),
  /** After this instant the token no longer opens anything; null: until revoked. */
  expiresAt: z.string().nullable(),
  /** The API key id that created it (audit). */
  createdBy: z.string(),
});
export type PortalTokenRecord = z.infer<typeof PortalTokenRecordSchema>;

/** POST /api/v1/portal-tokens: the token, shown once. */
export const PortalTokenCreatedSchema = z.object({
  token: z.string(),
  portalUrl: z.string().describe('relative link that signs the customer in to the portal UI'),
  record: PortalTokenRecordSchema,
});
export type PortalTokenCreated = z.infer<typeof PortalTokenCreatedSchema>;

/** GET /api/v1/portal/meters: a meter on the customer's plans, with its group-by keys. */
export const PortalMeterSchema = z.object({ slug: z.string(), name: z.string(), aggregation: z.string(), groupBy: z.array(z.string()) });
export type PortalMeter = z.infer<typeof PortalMeterSchema>;

/** GET /api/v1/portal/anomalies: an anomaly as the customer sees it (what happened and its state; not who handled it). */
export const PortalAlertSchema = z.object({
  id: z.string(),
  kind: z.string(),
  severity: z.string(),
  status: z.string(),
  meter: z.string(),
  message: z.string(),
  windowStart: z.string(),
  windowEnd: z.string(),
  firstDetectedAt: z.string(),
  lastDetectedAt: z.string(),
});
export type PortalAlert = z.infer<typeof PortalAlertSchema>;

/** Adjustments: credits, charges, usage corrections and prepaid credit grants (append-only). */
export const AdjustmentKinds = ['credit', 'charge', 'usage_correction', 'credit_grant'] as const;
/** An adjustment as the rater stores it and /api/v1/adjustments returns it (the rater's `Adjustment`; api/contracts.test.ts keeps them equal). */
export const AdjustmentSchema = z.object({
  id: z.string(),
  customer: z.string(),
  kind: z.enum(AdjustmentKinds),
  currency: z.string(),
  amount: z.string(),
  meter: z.string(),
  quantity: z.string(),
  periodStart: z.string().nullable(),
  expiresAt: z.string().nullable(),
  reasonCode: z.string(),
  note: z.string(),
  actor: z.string(),
  createdAt: z.string(),
});
export type Adjustment = z.infer<typeof AdjustmentSchema>;

/** One active subscription's current period in a projected-invoice response, without its two invoices. */
export const ProjectedPeriodSchema = z.object({
  periodStart: z.string(),
  periodEnd: z.string(),
  /** Share of the period elapsed, a decimal string in [0, 1]. */
  elapsedShare: z.string(),
  amountSoFar: z.string(),
  projectedTotal: z.string(),
  currency: z.string(),
});
export type ProjectedPeriod = z.infer<typeof ProjectedPeriodSchema>;

/** GET .../projected-invoice: per active subscription, the invoice so far and projected to period end (`I`: the rater's Invoice). */
export interface ProjectedInvoices<I> {
  customer: string;
  subscriptions: (ProjectedPeriod & { soFar: I; projected: I })[];
}

/** An invoice in a listing: everything but its lines, and how many there are (`I`: the rater's Invoice). */
export type InvoiceHead<I extends { lines: readonly unknown[] }> = Omit<I, 'lines'> & { lineCount: number };

/** A listing: `{ items: [...] }`. */
export interface Items<T> {
  items: T[];
}

/**
 * One page of a paginated listing (OpenMeter's shape): `page` is 1-based, `totalCount` counts
 * every item matching the filters, across all pages. Query: `page`, `pageSize`, `sort`, `order`, `q`
 * (see api/pagination.ts).
 */
export interface Page<T> extends Items<T> {
  page: number;
  pageSize: number;
  totalCount: number;
}

/** Statuses of a metered-vs-invoiced row (GET /api/v1/billing/usage-reconcile). */
export const UsageReconcileStatuses = ['ok', 'pending', 'mismatch', 'not_additive'] as const;

/** Metered vs invoiced usage of one finalized invoice and meter. */
export const UsageReconcileRowSchema = z.object({
  customer: z.string(),
  /** The customer's time zone, in which its periods are cut. */
  timeZone: z.string(),
  invoiceId: z.string(),
  number: z.string().nullable(),
  periodStart: z.string(),
  periodEnd: z.string(),
  meter: z.string(),
  /** Quantity of the invoice's usage lines of the meter. */
  invoiced: z.string(),
  /** Quantity of the correction lines for this period on later invoices (listed in `corrections`). */
  corrected: z.string(),
  corrections: z.array(z.object({ invoice: z.string(), number: z.string().nullable(), quantity: z.string() })),
  /** Usage-correction adjustments of the meter for this period. */
  usageCorrections: z.string(),
  /** The meter's aggregation; null if the meter no longer exists. */
  aggregation: z.string().nullable(),
  /** Usage stored now for the customer in the period; null unless SUM or COUNT. */
  metered: z.string().nullable(),
  /** metered + usageCorrections - invoiced - corrected; null unless SUM or COUNT. */
  difference: z.string().nullable(),
  status: z.enum(UsageReconcileStatuses),
});
export type UsageReconcileRow = z.infer<typeof UsageReconcileRowSchema>;

/** GET /api/v1/billing/usage-reconcile: the rows of invoices whose period starts in `period` (YYYY-MM). */
export const UsageReconcileSchema = z.object({ period: z.string(), ok: z.boolean(), rows: z.array(UsageReconcileRowSchema) });
export type UsageReconcile = z.infer<typeof UsageReconcileSchema>;

/** GET /api/v1/billing/aggregates as JSON (`R`: the rater's AggregateRow). */
export interface Aggregates<R> {
  period: string;
  rows: R[];
}

/**
 * GET /api/v1/billing/stripe/reconcile (`R`: the rater's Stripe ReconcileRow). Answered whether
 * or not Stripe sync is on: off (no STRIPE_API_KEY), `enabled` is false, `mismatches` is empty
 * and `message` says how to turn it on, so a client never has to read a 404 as "off".
 */
export interface StripeMismatches<R> {
  enabled: boolean;
  mismatches: R[];
  /** Set when sync is off: what to do to turn it on. */
  message?: string;
}

/** What GET /api/v1/billing/stripe/reconcile says when Stripe sync is off. */
export const STRIPE_SYNC_OFF_MESSAGE = 'Stripe sync is off: set STRIPE_API_KEY (and STRIPE_API_BASE for a Stripe-compatible endpoint) and restart to push finalized invoices to Stripe and reconcile them.';

/**
 * A dead letter as GET /api/v1/dead-letters lists it: an event accepted but not counted, with the
 * reason. The processor's `DeadLetter` (api/contracts.test.ts keeps them equal).
 */
export const DeadLetterSchema = z.object({
  /** Sequence in the dead-letter stream: the handle for re-drive. */
  seq: z.number().int(),
  reason: z.string(),
  /** Where it came from: event stream sequence and index within that batch. */
  stream: z.string(),
  streamSeq: z.number().int(),
  index: z.number().int(),
  receivedAtMs: z.number().int(),
  deadLetteredAt: z.string(),
  /** The event exactly as received (JSON text). */
  event: z.string(),
});
export type DeadLetter = z.infer<typeof DeadLetterSchema>;

/** GET /api/v1/dead-letters: a page of dead letters; `nextAfterSeq` when more follow. */
export const DeadLettersSchema = z.object({ items: z.array(DeadLetterSchema), total: z.number().int(), nextAfterSeq: z.number().int().optional() });
export type DeadLetters = z.infer<typeof DeadLettersSchema>;

/** POST /api/v1/dead-letters/{seq}/redrive: the event's new sequence in the event stream. */
export const RedrivenSchema = z.object({ streamSeq: z.number().int() });
export type Redriven = z.infer<typeof RedrivenSchema>;

/** Why usage is billed by no invoice (GET /api/v1/billing/unbilled; rater/unbilled.ts gives each unit the first that applies). */
export const UnbilledReasonValues = ['meter_not_priced', 'unknown_subject', 'no_subscription', 'meter_not_in_plan'] as const;

/** One subject's unbilled usage of one meter in the month, for one reason, at list price (docs/unbilled.md). */
export const UnbilledRowSchema = z.object({
  reason: z.enum(UnbilledReasonValues),
  subject: z.string(),
  /** The customer's key when the subject is one, else null. */
  customer: z.string().nullable(),
  meter: z.string(),
  aggregation: z.string(),
  quantity: z.string().describe('exact decimal string: the meter over the parts of the month with this reason'),
  /** The parts of the month (half-open) this row covers. */
  ranges: z.array(z.object({ start: z.string(), end: z.string() })),
  /** At list price, rounded once to the currency's minor unit; null: nothing prices it (see `note`). */
  amount: z.string().nullable(),
  currency: z.string().nullable(),
  /** The plan and charge whose price was used. */
  plan: z.string().nullable(),
  charge: z.string().nullable(),
  priceSource: z.enum(['subscription_plan', 'catalog_lowest']).nullable(),
  note: z.string().optional(),
});
export type UnbilledRow = z.infer<typeof UnbilledRowSchema>;

/** GET /api/v1/billing/unbilled: the month's unbilled usage, rows and totals per reason and currency (currency null: unpriced rows, counted only). */
export const UnbilledSchema = z.object({
  month: z.string(),
  timeZone: z.string(),
  from: z.string(),
  to: z.string(),
  rows: z.array(UnbilledRowSchema),
  totals: z.array(z.object({ reason: z.enum(UnbilledReasonValues), currency: z.string().nullable(), amount: z.string().nullable(), rows: z.number().int() })),
  /** The priced rows per currency over every reason. */
  currencyTotals: z.array(z.object({ currency: z.string(), amount: z.string(), rows: z.number().int() })),
});
export type Unbilled = z.infer<typeof UnbilledSchema>;

/** One customer's revenue of one product in one currency for a month (GET /api/v1/revenue; docs/revenue.md). Amounts in the currency's major unit. */
export const RevenueRowSchema = z.object({
  customer: z.string(),
  currency: z.string(),
  product: z.string().describe('base_fee, usage.<charge>, minimum_commitment or one_time'),
  deferredOpening: z.string().describe('deferred revenue at the start of the month'),
  billed: z.string().describe('billed by the invoices filed in the month (their period starts in it, in the customer zone), net of discounts and credits'),
  recognized: z.string().describe('recognized in the month, net of discounts and credits'),
  deferredClosing: z.string().describe('deferred revenue at the end of the month: deferredOpening + billed - recognized'),
});

/** GET /api/v1/revenue: the month's revenue per customer, product and currency, with totals per currency. */
export const RevenueReportSchema = z.object({
  month: z.string(),
  rows: z.array(RevenueRowSchema),
  totals: z.array(RevenueRowSchema.omit({ customer: true, product: true })),
});
export type RevenueReportBody = z.infer<typeof RevenueReportSchema>;

/** GET /api/v1/journal/check: the month's journal balances and ties out to the invoices, per currency. */
export const JournalCheckSchema = z.object({
  month: z.string(),
  ok: z.boolean(),
  checks: z.array(z.object({ name: z.string(), currency: z.string(), expected: z.string(), actual: z.string(), ok: z.boolean(), rule: z.string() })),
});
export type JournalCheckBody = z.infer<typeof JournalCheckSchema>;
