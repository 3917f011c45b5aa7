/**
 * Shapes of the API responses the UI reads: the server's own types, from the pure contract files
 * of the components that produce them (type-only imports, erased when bundled). Every quantity
 * and amount is a decimal string.
 */
import type { AnomalyRecord } from '../../anomaly/types.ts';
import type { InvoiceHead as InvoiceHeadOf, PortalAlert, ProjectedInvoices } from '../../api/contracts.ts';
import type { Invoice } from '../../rater/invoice-types.ts';

export type { Account, Accounts, AccountSummary, Adjustment, Items, PortalAlert, PortalMeter, PortalTokenCreated, PortalTokenRecord, WhoAmI } from '../../api/contracts.ts';
export type { AnomalyRecord } from '../../anomaly/types.ts';
export type { Meter } from '../../meter/contracts.ts';
export type { Invoice, InvoiceLine } from '../../rater/invoice-types.ts';
export type { BreakdownRow } from '../../rater/pricing/types.ts';
export type { UsageResult, UsageRow } from '../../usage/contracts.ts';

export type InvoiceHead = InvoiceHeadOf<Invoice>;
export type Projected = ProjectedInvoices<Invoice>;

/** An anomaly from either list: the dashboard's has every field, the portal's only the public ones. */
export type Anomaly = PortalAlert & Partial<Omit<AnomalyRecord, keyof PortalAlert>>;
