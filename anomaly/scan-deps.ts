import type { CatalogReplica } from '../common/catalog.ts';
import type { Logger } from '../common/logger.ts';
import type { Period } from '../rater/index.ts';
import type { UsageStore } from '../usage/index.ts';
import type { AlertEvent } from './alerts.ts';
import type { Anomaly } from './store.ts';
import type { Detection } from './types.ts';

/**
 * What the scan needs of each of its collaborators, and nothing more. The real ones (CatalogReplica,
 * ClickHouseUsageStore, AnomalyStore, AlertDispatcher, Leases, Billing) satisfy these as they are;
 * unit tests hand in small in-memory ones.
 */

/** The catalog entries the scan reads (meters, customers, thresholds). */
export type CatalogView<T> = Pick<CatalogReplica<T>, 'get' | 'list'>;

/** The usage the scan reads: hourly rollups for scoring, period-to-date totals for thresholds. */
export type ScanUsage = Pick<UsageStore, 'hourly' | 'query'>;

/** Where detections are kept: one open anomaly per customer × meter × kind (AnomalyStore). */
export interface AnomalyRecords {
  /** Updates the open anomaly of this customer × meter × kind or opens one; `created` is true only for a new one. */
  upsert(customer: string, meter: string, d: Detection, nowMs: number, detail?: Record<string, unknown>): Promise<{ anomaly: Anomaly; created: boolean }>;
  list(filter: { customer?: string; meter?: string; kind?: string }): Promise<Anomaly[]>;
}

/** Where alerts go (AlertDispatcher): fire and forget, delivery is the sink's business. */
export interface AlertSink {
  dispatch(event: AlertEvent, a: Anomaly): void;
}

/** A job lease (Leases): runs `fn` only while holding `name`; `ran: false` when another holder has it. */
export interface ScanLease {
  withLease<T>(name: string, fn: () => Promise<T>, logger?: Logger): Promise<{ ran: true; value: T } | { ran: false }>;
}

/** What the scan reads of billing (Billing): the projected invoice, the last invoices, the current period. */
export interface BillingView {
  projected(customerKey: string, nowMs: number): Promise<{ period: Period; projected: { total: string } }[]>;
  /** The customer's finalized invoices, oldest first. */
  finalized(filter: { customer: string }): Promise<{ invoice: { total: string } }[]>;
  periodForCustomer(customer: string, nowMs: number): Period | undefined;
}
