import type { BreakdownRow } from './pricing/types.ts';

/**
 * Invoices as the rater produces them and finance reads them. Amounts are decimal strings in
 * the currency's major unit, rounded once per line to the currency's minor unit; `amountMinor`
 * is the same amount as an integer string of minor units (what Stripe takes).
 */
export const InvoiceStatuses = ['draft', 'finalized'] as const;
export type InvoiceStatus = (typeof InvoiceStatuses)[number];

export const LineKinds = ['base_fee', 'usage', 'minimum_true_up', 'credit', 'discount', 'correction', 'adjustment', 'proration'] as const;
export type LineKind = (typeof LineKinds)[number];

export interface InvoiceLine {
  /** Stable id: the same close gives the same id (Stripe idempotency keys derive from it). */
  id: string;
  kind: LineKind;
  description: string;
  /** The meter (usage and correction lines). */
  meter?: string;
  /** The service period this line covers, half-open [start, end), ISO 8601 UTC. */
  periodStart: string;
  periodEnd: string;
  quantity: string;
  unitPrice?: string;
  amount: string;
  amountMinor: string;
  breakdown: BreakdownRow[];
}

export interface Invoice {
  id: string;
  /** Assigned when finalized, e.g. "ML-2026-000042". */
  number?: string;
  customer: string;
  currency: string;
  periodStart: string;
  periodEnd: string;
  status: InvoiceStatus;
  /** Events ingested at or before this instant are on the invoice; later ones become corrections. */
  cutoff: string;
  issuedAt?: string;
  lines: InvoiceLine[];
  total: string;
  totalMinor: string;
}
