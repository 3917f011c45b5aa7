/**
 * Shapes of the API responses the UI reads: the server's own types, from the pure contract files
 * of the components that produce them (type-only imports, erased when bundled). Every quantity
 * and amount is a decimal string.
 */
import type { AnomalyRecord } from '../../anomaly/types.ts';
import type { Aggregates as AggregatesOf, InvoiceHead as InvoiceHeadOf, PortalAlert, ProjectedInvoices, StripeMismatches } from '../../api/contracts.ts';
import type { AggregateRow, ReconcileRow } from '../../rater/contracts.ts';
import type { Invoice } from '../../rater/invoice-types.ts';

export type { Account, AccountRow, Accounts, AccountsPage, AccountSummary, Adjustment, DeadLetter, DeadLetters, Items, PortalAlert, PortalMeter, PortalTokenCreated, PortalTokenRecord, Redriven, UsageReconcile, UsageReconcileRow, WhoAmI } from '../../api/contracts.ts';
export type { AnomalyRecord } from '../../anomaly/types.ts';
export type { Meter } from '../../meter/contracts.ts';
export type { AggregateRow, InvoicePreviewItem, InvoicePreviews, Plan, PlanVersion, PlanView, Subscription } from '../../rater/contracts.ts';
export type { Invoice, InvoiceLine } from '../../rater/invoice-types.ts';
export type { BreakdownRow } from '../../rater/pricing/types.ts';
export type { ReconcileLine, UsageResult, UsageRow } from '../../usage/contracts.ts';

export type InvoiceHead = InvoiceHeadOf<Invoice>;
export type Projected = ProjectedInvoices<Invoice>;
export type Aggregates = AggregatesOf<AggregateRow>;
/** A finalized invoice Stripe does not agree with (the rater's Stripe `ReconcileRow`). */
export type StripeMismatch = ReconcileRow;
export type StripeReconcile = StripeMismatches<StripeMismatch>;

/** An anomaly from either list: the dashboard's has every field, the portal's only the public ones. */
export type Anomaly = PortalAlert & Partial<Omit<AnomalyRecord, keyof PortalAlert>>;
