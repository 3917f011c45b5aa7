import { createHash } from 'node:crypto';
import type Stripe from 'stripe';
import type { Invoice } from '../invoice-types.ts';

/**
 * What pushing one Meterline invoice to Stripe means, as data: the exact parameters and
 * idempotency key of every request, decided before the first request is sent. Pure: no I/O,
 * so a bad invoice is refused before anything exists in Stripe, and the same invoice always
 * yields byte-identical requests (which Stripe's idempotency layer requires: a key re-sent
 * with different parameters is rejected with `idempotency_error`).
 */

/** Stripe's limits that a push would otherwise hit half-way through. */
export const STRIPE_LIMITS = {
  idempotencyKeyChars: 255,
  itemsPerInvoice: 250,
  metadataValueChars: 500,
} as const;

/**
 * Where Stripe's minor unit is not ISO 4217's (which Meterline's `amountMinor` uses, see
 * rater/pricing/money.ts): Stripe amount = Meterline amount x `times`, or / `divide` when exact.
 * - ISK: ISO has no minor unit; Stripe keeps ISK two-decimal (100 = 1 krona, multiples of 100 only).
 * - MGA: ISO has 2 decimals; Stripe treats the ariary as zero-decimal.
 * HUF and TWD are two-decimal in both for invoice amounts (Stripe's zero-decimal rule for them is
 * about payouts); every other currency Stripe supports uses ISO's exponent.
 */
export const STRIPE_MINOR_UNIT_SCALE: Readonly<Record<string, { times: bigint } | { divide: bigint }>> = {
  isk: { times: 100n },
  mga: { divide: 100n },
};

/** Three-decimal currencies, whose amounts Stripe's payment partners want ending in 0. */
export const STRIPE_THREE_DECIMAL: readonly string[] = ['bhd', 'jod', 'kwd', 'omr', 'tnd'];

/** Meterline minor units to Stripe's, or undefined when Stripe cannot carry the amount exactly. */
export function toStripeAmount(amountMinor: bigint, currency: string): bigint | undefined {
  const scale = STRIPE_MINOR_UNIT_SCALE[currency.toLowerCase()];
  if (!scale) return amountMinor;
  if ('times' in scale) return amountMinor * scale.times;
  return amountMinor % scale.divide === 0n ? amountMinor / scale.divide : undefined;
}

/** Stripe's minor units to Meterline's, as an exact decimal string (an integer string unless Stripe holds a fraction of Meterline's unit). */
export function fromStripeAmount(amount: number | bigint, currency: string): string {
  const value = BigInt(amount);
  const scale = STRIPE_MINOR_UNIT_SCALE[currency.toLowerCase()];
  if (!scale) return String(value);
  if ('divide' in scale) return String(value * scale.divide);
  const whole = value / scale.times;
  const rest = value % scale.times;
  if (rest === 0n) return String(whole);
  const digits = String(scale.times).length - 1;
  const sign = value < 0n ? '-' : '';
  const abs = (v: bigint): bigint => (v < 0n ? -v : v);
  return `${sign}${abs(whole)}.${String(abs(rest)).padStart(digits, '0').replace(/0+$/, '')}`;
}

export interface PlannedItem {
  lineId: string;
  /** Everything but `invoice`, which is the draft's id, known only once the draft exists. */
  params: Omit<Stripe.InvoiceItemCreateParams, 'invoice'> & { customer: string; amount: number; currency: string };
  idempotencyKey: string;
}

export interface PushPlan {
  meterlineInvoiceId: string;
  customer: string;
  /** Lower-case ISO code, as Stripe returns it. */
  currency: string;
  /** Meterline's total, in Meterline's (ISO 4217) minor units. */
  totalMinor: string;
  /** The same total in Stripe's minor units: what Stripe's invoice `total` must be. */
  stripeTotal: bigint;
  invoice: { params: Stripe.InvoiceCreateParams & { customer: string; currency: string }; idempotencyKey: string };
  items: PlannedItem[];
  finalizeIdempotencyKey: string;
  /**
   * Lower bound (unix seconds) on the `created` time of a Stripe invoice that may already exist
   * for this Meterline invoice: it cannot have been pushed before its period started.
   */
  createdGte: number;
}

export type PlanResult = { ok: true; plan: PushPlan } | { ok: false; problems: string[] };

/** Metadata keys Meterline writes on Stripe objects (and looks them up by). */
export const MetadataKeys = {
  invoiceId: 'meterline_invoice_id',
  invoiceNumber: 'meterline_number',
  lineId: 'meterline_line_id',
  kind: 'kind',
  meter: 'meter',
} as const;

/**
 * Idempotency key for `prefix` + `id`, kept under Stripe's 255-character limit: ids that would
 * not fit are replaced by their SHA-256, so the key stays a deterministic function of the id.
 */
export function idempotencyKey(prefix: 'meterline-invoice' | 'meterline-line' | 'meterline-finalize', id: string): string {
  const plain = `${prefix}-${id}`;
  if (plain.length <= STRIPE_LIMITS.idempotencyKeyChars) return plain;
  return `${prefix}-sha256-${createHash('sha256').update(id).digest('hex')}`;
}

const INTEGER = /^-?\d+$/;

/** Unix seconds of an ISO 8601 instant, or undefined when it does not parse. */
function unixSeconds(iso: string, round: 'floor' | 'ceil'): number | undefined {
  const ms = Date.parse(iso);
  if (!Number.isFinite(ms)) return undefined;
  return round === 'floor' ? Math.floor(ms / 1000) : Math.ceil(ms / 1000);
}

/** `value` (Meterline minor units) as a Stripe amount, or a problem. */
function stripeAmountOf(value: string, currency: string, what: string, problems: string[]): number | undefined {
  if (!INTEGER.test(value)) {
    problems.push(`${what} "${value}" is not an integer number of minor units`);
    return undefined;
  }
  const amount = toStripeAmount(BigInt(value), currency);
  if (amount === undefined) {
    problems.push(`${what} ${value} has a fraction of a unit that Stripe cannot carry in ${currency.toUpperCase()} (Stripe's minor unit is larger than ISO 4217's)`);
    return undefined;
  }
  const n = Number(amount);
  if (!Number.isSafeInteger(n)) {
    problems.push(`${what} ${value} is beyond what Stripe's integer amounts can carry exactly`);
    return undefined;
  }
  return n;
}

/**
 * Builds the requests for pushing `invoice` to the Stripe customer `stripeCustomerId`, or says
 * why the invoice cannot be pushed (every reason, not just the first).
 */
export function planPush(invoice: Invoice, stripeCustomerId: string): PlanResult {
  const problems: string[] = [];
  if (invoice.status !== 'finalized') problems.push(`invoice ${invoice.id} is ${invoice.status}; only finalized invoices are pushed to Stripe`);
  if (!/^cus_\w+$/.test(stripeCustomerId)) problems.push(`"${stripeCustomerId}" is not a Stripe customer id (cus_...)`);
  const currency = invoice.currency.toLowerCase();
  if (!/^[a-z]{3}$/.test(currency)) problems.push(`currency "${invoice.currency}" is not a three-letter ISO 4217 code`);
  if (invoice.lines.length > STRIPE_LIMITS.itemsPerInvoice) {
    problems.push(`invoice has ${invoice.lines.length} lines; a Stripe invoice holds at most ${STRIPE_LIMITS.itemsPerInvoice} items`);
  }
  const total = stripeAmountOf(invoice.totalMinor, currency, 'totalMinor', problems);
  if (total !== undefined && STRIPE_THREE_DECIMAL.includes(currency) && total % 10 !== 0) {
    problems.push(`total ${invoice.totalMinor} ${currency.toUpperCase()} does not end in 0; Stripe cannot collect three-decimal amounts that do not (round the invoice to 10 minor units)`);
  }
  const periodStart = unixSeconds(invoice.periodStart, 'floor');
  if (periodStart === undefined) problems.push(`periodStart "${invoice.periodStart}" is not an ISO 8601 instant`);

  const items: PlannedItem[] = [];
  const seen = new Set<string>();
  let sum = 0n;
  for (const line of invoice.lines) {
    if (seen.has(line.id)) problems.push(`line id ${line.id} appears twice; line ids must be unique (they key the Stripe items)`);
    seen.add(line.id);
    const amount = stripeAmountOf(line.amountMinor, currency, `line ${line.id} amountMinor`, problems);
    if (amount !== undefined) sum += BigInt(line.amountMinor);
    const start = unixSeconds(line.periodStart, 'floor');
    // Meterline periods are half-open [start, end); Stripe's item period is documented as
    // inclusive but Stripe's own subscription items end at the next period's start, so the
    // end instant is passed as is (rounded up to a whole second, keeping end >= start).
    const end = unixSeconds(line.periodEnd, 'ceil');
    if (start === undefined || end === undefined || end < start) {
      problems.push(`line ${line.id} has an invalid period [${line.periodStart}, ${line.periodEnd})`);
    }
    if (line.id.length > STRIPE_LIMITS.metadataValueChars) problems.push(`line id ${line.id.slice(0, 40)}... is longer than Stripe's ${STRIPE_LIMITS.metadataValueChars}-character metadata values`);
    if (amount === undefined || start === undefined || end === undefined) continue;
    const metadata: Record<string, string> = {
      [MetadataKeys.invoiceId]: invoice.id,
      [MetadataKeys.lineId]: line.id,
      [MetadataKeys.kind]: line.kind,
    };
    if (line.meter !== undefined) metadata[MetadataKeys.meter] = line.meter;
    items.push({
      lineId: line.id,
      params: {
        customer: stripeCustomerId,
        amount,
        currency,
        description: line.description,
        period: { start, end: Math.max(start, end) },
        metadata,
      },
      idempotencyKey: idempotencyKey('meterline-line', line.id),
    });
  }
  if (total !== undefined && items.length === invoice.lines.length && sum !== BigInt(invoice.totalMinor)) {
    problems.push(`the lines add up to ${sum} minor units but totalMinor is ${invoice.totalMinor}; Stripe's total would not match`);
  }
  if (problems.length > 0 || total === undefined || periodStart === undefined) return { ok: false, problems };

  const invoiceMetadata: Record<string, string> = { [MetadataKeys.invoiceId]: invoice.id };
  if (invoice.number !== undefined) invoiceMetadata[MetadataKeys.invoiceNumber] = invoice.number;
  return {
    ok: true,
    plan: {
      meterlineInvoiceId: invoice.id,
      customer: stripeCustomerId,
      currency,
      totalMinor: invoice.totalMinor,
      stripeTotal: BigInt(total),
      invoice: {
        params: {
          customer: stripeCustomerId,
          collection_method: 'send_invoice',
          days_until_due: 30,
          auto_advance: false,
          pending_invoice_items_behavior: 'exclude',
          currency,
          metadata: invoiceMetadata,
        },
        idempotencyKey: idempotencyKey('meterline-invoice', invoice.id),
      },
      items,
      finalizeIdempotencyKey: idempotencyKey('meterline-finalize', invoice.id),
      createdGte: periodStart,
    },
  };
}
