import type { Store } from '../common/clickhouse.ts';
import type { CatalogReplica } from '../common/catalog.ts';
import { errorMessage } from '../common/errors.ts';
import type { Leases } from '../common/lease.ts';
import type { Logger } from '../common/logger.ts';
import type { Billing } from './billing.ts';
import type { Customer } from './catalog.ts';
import type { ReconcileRow, StripeSync } from './stripe/index.ts';

export const SyncStatuses = ['pending', 'synced', 'failed', 'skipped'] as const;
export type SyncStatus = (typeof SyncStatuses)[number];

export interface SyncState {
  invoiceId: string;
  status: SyncStatus;
  stripeInvoiceId: string;
  attempts: number;
  lastError: string;
  updatedAt: string;
}

/** Give up retrying an invoice after this many failed runs; it stays `failed` and visible. */
const MAX_ATTEMPTS = 20;

/**
 * Pushes finalized invoices to Stripe, one run at a time (under a lease), and records the sync
 * status of each invoice in `invoice_sync`. An invoice is pushed after it is stored; a failure
 * is retried on the next run with the same idempotency keys (StripeSync makes a re-push a no-op
 * for what already landed). Customers without a Stripe customer id are `skipped`.
 */
export class InvoiceSync {
  constructor(
    private readonly deps: { store: Store; billing: Billing; customers: CatalogReplica<Customer>; stripe: StripeSync; leases: Leases; logger: Logger },
  ) {}

  private get db() {
    return this.deps.store.db;
  }

  async states(): Promise<Map<string, SyncState>> {
    const rs = await this.deps.store.ch.query({
      query: `SELECT invoice_id, argMax(status, updated_at) AS status, argMax(stripe_invoice_id, updated_at) AS sid, max(attempts) AS attempts,
                argMax(last_error, updated_at) AS err, toString(max(updated_at)) AS at
              FROM ${this.db}.invoice_sync GROUP BY invoice_id`,
      format: 'JSONEachRow',
    });
    const out = new Map<string, SyncState>();
    for (const r of await rs.json<{ invoice_id: string; status: SyncStatus; sid: string; attempts: string; err: string; at: string }>()) {
      out.set(r.invoice_id, { invoiceId: r.invoice_id, status: r.status, stripeInvoiceId: r.sid, attempts: Number(r.attempts), lastError: r.err, updatedAt: r.at });
    }
    return out;
  }

  async status(invoiceId: string): Promise<SyncState> {
    return (await this.states()).get(invoiceId) ?? { invoiceId, status: 'pending', stripeInvoiceId: '', attempts: 0, lastError: '', updatedAt: '' };
  }

  private async record(s: Omit<SyncState, 'updatedAt'>): Promise<void> {
    await this.deps.store.ch.insert({
      table: `${this.db}.invoice_sync`,
      values: [{ invoice_id: s.invoiceId, status: s.status, stripe_invoice_id: s.stripeInvoiceId, attempts: s.attempts, last_error: s.lastError.slice(0, 2000), updated_at: Date.now() }],
      format: 'JSONEachRow',
    });
  }

  /** Pushes every finalized invoice not yet synced. */
  async run(): Promise<{ synced: number; failed: number; skipped: number }> {
    const r = await this.deps.leases.withLease(
      'stripe-sync',
      async () => {
        const counts = { synced: 0, failed: 0, skipped: 0 };
        const states = await this.states();
        for (const { invoice } of await this.deps.billing.finalized()) {
          const st = states.get(invoice.id);
          if (st && (st.status === 'synced' || st.status === 'skipped' || st.attempts >= MAX_ATTEMPTS)) continue;
          const customer = this.deps.customers.get(invoice.customer);
          if (!customer?.stripeCustomerId) {
            await this.record({ invoiceId: invoice.id, status: 'skipped', stripeInvoiceId: '', attempts: 0, lastError: 'the customer has no stripeCustomerId' });
            counts.skipped++;
            continue;
          }
          const attempts = (st?.attempts ?? 0) + 1;
          try {
            const res = await this.deps.stripe.push(invoice, customer.stripeCustomerId);
            await this.record({ invoiceId: invoice.id, status: 'synced', stripeInvoiceId: res.stripeInvoiceId, attempts, lastError: '' });
            counts.synced++;
          } catch (err) {
            this.deps.logger.warn({ err: errorMessage(err), invoice: invoice.id, attempts }, 'Stripe sync failed; retried on the next run');
            await this.record({ invoiceId: invoice.id, status: 'failed', stripeInvoiceId: st?.stripeInvoiceId ?? '', attempts, lastError: errorMessage(err) });
            counts.failed++;
          }
        }
        return counts;
      },
      this.deps.logger,
    );
    return r.ran ? r.value : { synced: 0, failed: 0, skipped: 0 };
  }

  /** Synced invoices whose Stripe total or currency differs from Meterline's. */
  async reconcile(): Promise<ReconcileRow[]> {
    const states = await this.states();
    const pairs = (await this.deps.billing.finalized())
      .map((s) => ({ invoice: s.invoice, stripeInvoiceId: states.get(s.invoice.id)?.stripeInvoiceId ?? '' }))
      .filter((p) => p.stripeInvoiceId !== '' && states.get(p.invoice.id)?.status === 'synced');
    return (await this.deps.stripe.reconcile(pairs)).filter((r) => r.problems.length > 0);
  }
}
