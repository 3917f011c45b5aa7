import { setTimeout as sleep } from 'node:timers/promises';
import type Stripe from 'stripe';
import type { Logger } from '../../common/logger.ts';
import type { ReconcileProblem, ReconcileRow } from '../contracts.ts';
import type { Invoice } from '../invoice-types.ts';
import { fromStripeAmount, MetadataKeys, planPush, toStripeAmount, type PushPlan } from './push-plan.ts';
import { asStripeError, backoffDelayMs, DEFAULT_RETRY, isRetryableStripeError, StripeSyncError, toSyncError, type RetryPolicy } from './stripe-errors.ts';

export interface StripeSyncOptions {
  /** A stripe-node client (see `createStripeClient`); its own retries are overridden per request. */
  stripe: Stripe;
  logger: Logger;
  /** Defaults: 5 attempts, 500 ms doubling, at most 20 s between attempts. */
  retry?: Partial<RetryPolicy>;
  /** How many invoices `reconcile` retrieves at once (default 4; Stripe allows 25 reads/s in test mode). */
  reconcileConcurrency?: number;
}

export interface PushResult {
  stripeInvoiceId: string;
  /** Stripe's total in minor units, equal to Meterline's `totalMinor` (push fails otherwise). */
  totalMinor: string;
  /**
   * Stripe's status after finalizing: `open`, or `paid` when there is nothing to collect
   * (Stripe marks a zero, negative or below-minimum amount due as paid on finalization).
   */
  status: string;
}

export { ReconcileProblems, type ReconcileProblem, type ReconcileRow } from '../contracts.ts';

const FINALIZED = new Set(['open', 'paid', 'uncollectible']);

/**
 * Pushes finalized Meterline invoices to Stripe as Stripe invoices, and reconciles them.
 *
 * `push` is safe to repeat, concurrently or days later: every write carries an idempotency key
 * derived from Meterline ids, and before writing it looks for a Stripe invoice already made for
 * this Meterline invoice (Stripe forgets idempotency keys after 24 hours).
 */
export class StripeSync {
  private readonly stripe: Stripe;
  private readonly logger: Logger;
  private readonly retry: RetryPolicy;
  private readonly reconcileConcurrency: number;

  constructor(opts: StripeSyncOptions) {
    this.stripe = opts.stripe;
    this.logger = opts.logger.child({ component: 'stripe-sync' });
    this.retry = { ...DEFAULT_RETRY, ...opts.retry };
    if (!Number.isInteger(this.retry.attempts) || this.retry.attempts < 1) throw new Error(`retry.attempts must be an integer >= 1, got ${this.retry.attempts}`);
    this.reconcileConcurrency = Math.max(1, opts.reconcileConcurrency ?? 4);
  }

  /**
   * Pushes `invoice` to the Stripe customer `stripeCustomerId` and finalizes it there. The order
   * of effects, and what a failure between two steps leaves behind:
   *
   * 0. Plan every request (pure). A bad invoice fails here (STRIPE_INVOICE_INVALID); nothing is sent.
   * 1. Look up the customer's Stripe invoices made since the period started for one carrying
   *    `metadata.meterline_invoice_id`. Finalized: return it (nothing is written). Voided or
   *    duplicated: STRIPE_INVOICE_CONFLICT. A draft: resume it.
   * 2. Create the draft (`meterline-invoice-<id>`), excluding the customer's pending items, with
   *    `auto_advance: false` so Stripe never finalizes or sends it on its own. A failure after
   *    this leaves an empty or partial draft, which bills nobody and which the next push resumes.
   * 3. Create one item per line on that draft (`meterline-line-<line id>`), in line order, skipping
   *    lines a resumed draft already has. Attaching by `invoice` keeps items off any other invoice.
   * 4. Read the draft back. If an earlier push already finalized it, stop there. If its total or
   *    currency differs from Meterline's (a Stripe-side coupon, tax rate, or someone's edit),
   *    fail with STRIPE_TOTAL_MISMATCH and leave the draft unfinalized: Stripe never issues a
   *    total Meterline did not compute.
   * 5. Finalize (`meterline-finalize-<id>`). From here the invoice is issued in Stripe; Stripe
   *    marks it paid at once when nothing is due (zero or negative total, or below Stripe's
   *    minimum charge, which Stripe carries to the customer's balance).
   *
   * Each request is retried on connection errors, 409, 429 and 5xx with exponential backoff and
   * the same idempotency key, so a retry replays rather than repeats.
   */
  async push(invoice: Invoice, stripeCustomerId: string): Promise<PushResult> {
    const planned = planPush(invoice, stripeCustomerId);
    if (!planned.ok) {
      throw new StripeSyncError('STRIPE_INVOICE_INVALID', `invoice ${invoice.id} cannot be pushed to Stripe: ${planned.problems.join('; ')}`, {
        details: { meterlineInvoiceId: invoice.id, problems: planned.problems },
      });
    }
    const plan = planned.plan;
    const ctx = { meterlineInvoiceId: plan.meterlineInvoiceId, stripeCustomerId };
    const log = this.logger.child(ctx);

    // 1. An invoice made by an earlier push?
    const existing = await this.findExisting(plan);
    if (existing && existing.status !== 'draft') return this.finished(plan, existing, log, 'already in Stripe');

    // 2. The draft.
    const draft =
      existing ??
      (await this.call('invoices.create', ctx, () =>
        this.stripe.invoices.create(plan.invoice.params, { idempotencyKey: plan.invoice.idempotencyKey, maxNetworkRetries: 0 }),
      ));
    const draftCtx = { ...ctx, stripeInvoiceId: draft.id };
    if (existing) log.info({ stripeInvoiceId: draft.id }, 'resuming the Stripe draft of an earlier push');

    // 3. The items.
    const present = existing ? await this.lineIdsOn(draft.id, draftCtx) : new Set<string>();
    for (const item of plan.items) {
      if (present.has(item.lineId)) continue;
      const created = await this.call('invoiceItems.create', { ...draftCtx, lineId: item.lineId }, () =>
        this.stripe.invoiceItems.create({ ...item.params, invoice: draft.id }, { idempotencyKey: item.idempotencyKey, maxNetworkRetries: 0 }),
      );
      const on = typeof created.invoice === 'string' ? created.invoice : created.invoice?.id;
      if (on !== draft.id) {
        throw new StripeSyncError('STRIPE_INVOICE_CONFLICT', `Stripe item ${created.id} for line ${item.lineId} is on invoice ${on ?? '(none)'}, not on draft ${draft.id}`, {
          details: { ...draftCtx, lineId: item.lineId, stripeItemId: created.id },
        });
      }
    }

    // 4. Check the draft before it becomes a bill.
    const current = await this.call('invoices.retrieve', draftCtx, () => this.stripe.invoices.retrieve(draft.id, undefined, { maxNetworkRetries: 0 }));
    if (current.status !== 'draft') return this.finished(plan, current, log, 'finalized by an earlier push');
    this.assertMatches(plan, current, 'the draft was left unfinalized');

    // 5. Finalize.
    const finalized = await this.call('invoices.finalizeInvoice', draftCtx, () =>
      this.stripe.invoices.finalizeInvoice(draft.id, {}, { idempotencyKey: plan.finalizeIdempotencyKey, maxNetworkRetries: 0 }),
    );
    return this.finished(plan, finalized, log, 'pushed');
  }

  /**
   * Retrieves each Stripe invoice and returns a row for each one that does not agree with
   * Meterline: total or currency differs, missing, voided, or not made for that Meterline invoice.
   * Either the report is complete or this throws (STRIPE_UNAVAILABLE after retries): it never
   * passes off a partial report as a clean one.
   */
  async reconcile(pairs: { invoice: Invoice; stripeInvoiceId: string }[]): Promise<ReconcileRow[]> {
    const rows: (ReconcileRow | undefined)[] = new Array(pairs.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < pairs.length) {
        const i = next++;
        rows[i] = await this.reconcileOne(pairs[i]!.invoice, pairs[i]!.stripeInvoiceId);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.reconcileConcurrency, pairs.length) }, worker));
    const out = rows.filter((r): r is ReconcileRow => r !== undefined);
    this.logger.info({ checked: pairs.length, differing: out.length }, 'reconciled Meterline invoices with Stripe');
    return out;
  }

  private async reconcileOne(invoice: Invoice, stripeInvoiceId: string): Promise<ReconcileRow | undefined> {
    const currency = invoice.currency.toLowerCase();
    const base = { meterlineInvoiceId: invoice.id, stripeInvoiceId, currency, meterlineTotalMinor: invoice.totalMinor };
    let remote: Stripe.Invoice;
    try {
      remote = await this.call('invoices.retrieve', base, () => this.stripe.invoices.retrieve(stripeInvoiceId, undefined, { maxNetworkRetries: 0 }));
    } catch (err) {
      const e = asStripeError((err as { cause?: unknown }).cause);
      if (e?.statusCode === 404) {
        return { ...base, problems: ['missing_in_stripe'], stripeCurrency: null, stripeTotalMinor: null, differenceMinor: null, status: null };
      }
      throw err;
    }
    const problems: ReconcileProblem[] = [];
    const sameCurrency = remote.currency.toLowerCase() === currency;
    // Compared in Stripe's minor units (they differ from Meterline's for a few currencies), reported in Meterline's.
    const expected = toStripeAmount(BigInt(invoice.totalMinor), currency);
    const differs = expected === undefined || BigInt(remote.total) !== expected;
    if (!sameCurrency) problems.push('currency_differs');
    else if (differs) problems.push('total_differs');
    if (remote.metadata?.[MetadataKeys.invoiceId] !== invoice.id) problems.push('not_this_invoice');
    if (remote.status === 'void') problems.push('voided_in_stripe');
    if (problems.length === 0) return undefined;
    return {
      ...base,
      problems,
      stripeCurrency: remote.currency,
      stripeTotalMinor: fromStripeAmount(remote.total, remote.currency),
      differenceMinor: sameCurrency ? subtractDecimal(fromStripeAmount(remote.total, currency), invoice.totalMinor) : null,
      status: remote.status,
    };
  }

  /** Stripe invoices made for this Meterline invoice; see step 1 of `push`. */
  private async findExisting(plan: PushPlan): Promise<Stripe.Invoice | undefined> {
    const ctx = { meterlineInvoiceId: plan.meterlineInvoiceId, stripeCustomerId: plan.customer };
    const found = await this.call('invoices.list', ctx, async () => {
      const out: Stripe.Invoice[] = [];
      const list = this.stripe.invoices.list({ customer: plan.customer, created: { gte: plan.createdGte }, limit: 100 }, { maxNetworkRetries: 0 });
      for await (const inv of list) if (inv.metadata?.[MetadataKeys.invoiceId] === plan.meterlineInvoiceId) out.push(inv);
      return out;
    });
    const issued = found.filter((inv) => FINALIZED.has(inv.status ?? ''));
    if (issued.length > 1) {
      throw new StripeSyncError('STRIPE_INVOICE_CONFLICT', `Meterline invoice ${plan.meterlineInvoiceId} is issued twice in Stripe (${issued.map((i) => i.id).join(', ')}); void the extra one`, {
        details: { ...ctx, stripeInvoiceIds: issued.map((i) => i.id) },
      });
    }
    if (issued[0]) return issued[0];
    const draft = found.find((inv) => inv.status === 'draft');
    if (draft) return draft;
    const voided = found.find((inv) => inv.status === 'void');
    if (voided) {
      throw new StripeSyncError(
        'STRIPE_INVOICE_CONFLICT',
        `Meterline invoice ${plan.meterlineInvoiceId} was pushed as ${voided.id}, which was voided in Stripe; Meterline does not re-issue it by itself (issue a new Meterline invoice instead)`,
        { details: { ...ctx, stripeInvoiceId: voided.id } },
      );
    }
    return undefined;
  }

  /** Meterline line ids of the items already on a Stripe invoice. */
  private async lineIdsOn(stripeInvoiceId: string, ctx: Record<string, unknown>): Promise<Set<string>> {
    return this.call('invoiceItems.list', ctx, async () => {
      const ids = new Set<string>();
      for await (const item of this.stripe.invoiceItems.list({ invoice: stripeInvoiceId, limit: 100 }, { maxNetworkRetries: 0 })) {
        const id = item.metadata?.[MetadataKeys.lineId];
        if (id !== undefined) ids.add(id);
      }
      return ids;
    });
  }

  private finished(plan: PushPlan, inv: Stripe.Invoice, log: Logger, how: string): PushResult {
    if (inv.status === 'void') {
      throw new StripeSyncError('STRIPE_INVOICE_CONFLICT', `Stripe invoice ${inv.id} for Meterline invoice ${plan.meterlineInvoiceId} is void`, {
        details: { meterlineInvoiceId: plan.meterlineInvoiceId, stripeInvoiceId: inv.id },
      });
    }
    this.assertMatches(plan, inv, 'it is already finalized in Stripe: void it there and push again, or correct it on a later invoice');
    const result = { stripeInvoiceId: inv.id, totalMinor: fromStripeAmount(inv.total, plan.currency), status: inv.status ?? 'unknown' };
    log.info({ ...result, how }, `invoice ${how}`);
    return result;
  }

  private assertMatches(plan: PushPlan, inv: Stripe.Invoice, consequence: string): void {
    const currency = inv.currency.toLowerCase();
    if (currency === plan.currency && BigInt(inv.total) === plan.stripeTotal) return;
    throw new StripeSyncError(
      'STRIPE_TOTAL_MISMATCH',
      `Stripe invoice ${inv.id} totals ${fromStripeAmount(inv.total, currency)} ${currency} but Meterline invoice ${plan.meterlineInvoiceId} totals ${plan.totalMinor} ${plan.currency} (minor units); ${consequence}`,
      {
        details: {
          meterlineInvoiceId: plan.meterlineInvoiceId,
          stripeInvoiceId: inv.id,
          stripeStatus: inv.status,
          stripeTotalMinor: fromStripeAmount(inv.total, currency),
          meterlineTotalMinor: plan.totalMinor,
          stripeCurrency: currency,
          currency: plan.currency,
        },
      },
    );
  }

  /**
   * Runs one Stripe request, retrying retryable failures with exponential backoff. `fn` sends
   * the same request (same parameters, same idempotency key) every time.
   */
  private async call<T>(what: string, details: Record<string, unknown>, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!isRetryableStripeError(err) || attempt >= this.retry.attempts) throw toSyncError(err, what, attempt, details);
        const delayMs = backoffDelayMs(attempt, this.retry, Math.random());
        this.logger.warn({ ...details, err, what, attempt, delayMs }, `Stripe ${what} failed; retrying with the same idempotency key`);
        await sleep(delayMs);
      }
    }
  }
}

/** a - b for decimal strings with at most a few fraction digits (exact, via scaled bigints). */
function subtractDecimal(a: string, b: string): string {
  const frac = (x: string): number => (x.includes('.') ? x.split('.')[1]!.length : 0);
  const digits = Math.max(frac(a), frac(b));
  const scaled = (x: string): bigint => {
    const [i, f = ''] = x.split('.');
    const neg = i!.startsWith('-');
    const v = BigInt(`${neg ? i!.slice(1) : i}${f.padEnd(digits, '0')}`);
    return neg ? -v : v;
  };
  const d = scaled(a) - scaled(b);
  if (digits === 0) return String(d);
  const neg = d < 0n;
  const s = String(neg ? -d : d).padStart(digits + 1, '0');
  return `${neg ? '-' : ''}${s.slice(0, -digits)}.${s.slice(-digits)}`.replace(/\.?0+$/, '');
}
