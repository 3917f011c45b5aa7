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

/**
 * What a line comes from, as structured data (the same facts its id spells out). Set by the
 * invoice builder; invoices stored before it existed lack it: read it with `lineSource`.
 */
export type LineSource =
  /** A plan's base fee: for phase `phase` in arrears, this period in advance, or the next period in advance. */
  | { kind: 'base_fee'; timing: 'arrears' | 'advance-current'; phase: number }
  | { kind: 'base_fee'; timing: 'advance-next' }
  /** A plan change inside the period: the unused advance fee credited, or the new plan's fee charged. */
  | { kind: 'proration'; side: 'credit' | 'charge'; phase: number }
  /** Usage of one usage group: `charge` is the group id (the plan's charge key, `#n` for its n-th price in the period). */
  | { kind: 'usage'; charge: string }
  /** Discount `index` of the subscription: on the usage line of group `charge`, or on the invoice subtotal. */
  | { kind: 'discount'; index: number; charge: string }
  | { kind: 'discount'; index: number }
  | { kind: 'minimum_true_up' }
  /** A one-time credit or charge (an adjustment). */
  | { kind: 'adjustment'; adjustmentId: string }
  /** Late usage of an earlier period: `charge` as in usage lines ('(minimum)' for the minimum true-up). */
  | { kind: 'correction'; charge: string; periodStartMs: number }
  /** A draw on a prepaid credit grant. */
  | { kind: 'credit'; grantId: string };

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
  /** What the line comes from (absent on invoices stored before it was added: see `lineSource`). */
  source?: LineSource;
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

/**
 * The source of a line: its `source`, or for a line stored before `source` existed, the same
 * facts read from its id (`<invoice id>:<kind>:<key>`, as the builder made it). The one place
 * that parses a line id.
 */
export function lineSource(line: Pick<InvoiceLine, 'id' | 'kind' | 'source'>): LineSource {
  if (line.source) return line.source;
  const key = line.id.split(':').slice(2).join(':');
  const [a = '', b = ''] = key.split(':');
  switch (line.kind) {
    case 'base_fee':
      return a === 'advance-next' ? { kind: 'base_fee', timing: 'advance-next' } : { kind: 'base_fee', timing: a as 'arrears' | 'advance-current', phase: Number(b) };
    case 'proration':
      return { kind: 'proration', side: a as 'credit' | 'charge', phase: Number(b) };
    case 'usage':
      return { kind: 'usage', charge: key };
    case 'discount':
      // A charge key may itself hold ':' (`line:<i>:<charge>`).
      return a === 'line' ? { kind: 'discount', index: Number(b), charge: key.split(':').slice(2).join(':') } : { kind: 'discount', index: Number(b) };
    case 'minimum_true_up':
      return { kind: 'minimum_true_up' };
    case 'adjustment':
      return { kind: 'adjustment', adjustmentId: key };
    case 'correction': {
      const at = key.lastIndexOf(':');
      return { kind: 'correction', charge: key.slice(0, at), periodStartMs: Number(key.slice(at + 1)) };
    }
    case 'credit':
      return { kind: 'credit', grantId: key };
  }
}
