import { randomUUID } from 'node:crypto';
import Stripe from 'stripe';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../common/logger.ts';
import { FakeStripe } from '../../test/fake-stripe.ts';
import type { Invoice, InvoiceLine, LineKind } from '../invoice-types.ts';
import { createStripeClient, isStripeSyncError, StripeSync, type StripeSyncError } from './index.ts';

/**
 * StripeSync against a real HTTP server speaking Stripe's API (test/fake-stripe.ts), through the
 * real stripe-node client. No network beyond 127.0.0.1.
 */

const PERIOD = { start: '2026-10-01T00:00:00.000Z', end: '2026-11-01T00:00:00.000Z' };

interface LineSpec {
  kind?: LineKind;
  amountMinor: string;
  meter?: string;
  description?: string;
}

/** A finalized Meterline invoice whose totals add up; `decimals` is the currency's minor-unit exponent. */
function makeInvoice(currency: string, specs: LineSpec[], decimals = 2): Invoice {
  const id = `inv_${randomUUID()}`;
  const major = (minor: string): string => {
    if (decimals === 0) return minor;
    const neg = minor.startsWith('-');
    const digits = (neg ? minor.slice(1) : minor).padStart(decimals + 1, '0');
    return `${neg ? '-' : ''}${digits.slice(0, -decimals)}.${digits.slice(-decimals)}`;
  };
  const lines: InvoiceLine[] = specs.map((s, i) => ({
    id: `${id}:${s.kind ?? 'usage'}:${i}`,
    kind: s.kind ?? 'usage',
    description: s.description ?? `line ${i}`,
    ...(s.meter !== undefined ? { meter: s.meter } : {}),
    periodStart: PERIOD.start,
    periodEnd: PERIOD.end,
    quantity: '1',
    amount: major(s.amountMinor),
    amountMinor: s.amountMinor,
    breakdown: [],
  }));
  const totalMinor = String(specs.reduce((sum, s) => sum + BigInt(s.amountMinor), 0n));
  return {
    id,
    number: `ML-2026-${String(Math.floor(Math.random() * 1e6)).padStart(6, '0')}`,
    customer: 'acme',
    currency,
    periodStart: PERIOD.start,
    periodEnd: PERIOD.end,
    status: 'finalized',
    cutoff: PERIOD.end,
    issuedAt: '2026-11-01T01:00:00.000Z',
    lines,
    total: major(totalMinor),
    totalMinor,
  };
}

async function rejection(p: Promise<unknown>): Promise<StripeSyncError> {
  try {
    await p;
  } catch (err) {
    if (isStripeSyncError(err)) return err;
    throw err;
  }
  throw new Error('expected the push to fail');
}

let fake: FakeStripe;
let stripe: Stripe;
let sync: StripeSync;
let customer: string;

beforeEach(async () => {
  fake = await FakeStripe.start();
  stripe = new Stripe('sk_test_meterline', { host: '127.0.0.1', port: fake.port, protocol: 'http', maxNetworkRetries: 0 });
  sync = new StripeSync({ stripe, logger: silentLogger(), retry: { attempts: 5, baseDelayMs: 1 } });
  customer = fake.createCustomer();
});

afterEach(async () => {
  await fake.close();
});

const posts = (): { path: string; key: string | undefined }[] => fake.handled('POST').map((r) => ({ path: r.path, key: r.idempotencyKey }));

describe('push', () => {
  it('creates the draft first, one item per line in minor units, then finalizes it at Meterline’s total', async () => {
    // Someone else's pending item on the same customer must not be swept onto our invoice.
    await stripe.invoiceItems.create({ customer, amount: 777, currency: 'usd', description: 'not ours' });
    const invoice = makeInvoice('USD', [
      { kind: 'base_fee', amountMinor: '4900', description: 'Pro plan' },
      { kind: 'usage', amountMinor: '123456', meter: 'api_calls', description: 'API calls: 1,234,560 × $0.001' },
      { kind: 'discount', amountMinor: '-1000', description: 'Launch discount' },
    ]);

    const result = await sync.push(invoice, customer);

    const [stripeInvoice] = fake.invoices();
    expect(fake.invoices()).toHaveLength(1);
    expect(result).toEqual({ stripeInvoiceId: stripeInvoice!.id, totalMinor: '127356', status: 'open' });
    expect(stripeInvoice).toMatchObject({
      customer,
      currency: 'usd',
      status: 'open',
      total: 127356,
      collection_method: 'send_invoice',
      auto_advance: false,
      metadata: { meterline_invoice_id: invoice.id, meterline_number: invoice.number },
    });
    expect(result.totalMinor).toBe(invoice.totalMinor);

    // Order of writes: draft, items in line order, finalize; each with its derived key.
    expect(posts()).toEqual([
      { path: '/v1/invoiceitems', key: expect.any(String) }, // the foreign pending item above
      { path: '/v1/invoices', key: `meterline-invoice-${invoice.id}` },
      ...invoice.lines.map((l) => ({ path: '/v1/invoiceitems', key: `meterline-line-${l.id}` })),
      { path: `/v1/invoices/${stripeInvoice!.id}/finalize`, key: `meterline-finalize-${invoice.id}` },
    ]);
    const draftBody = fake.handled('POST', '/v1/invoices')[0]!.body;
    expect(draftBody).toEqual({
      customer,
      collection_method: 'send_invoice',
      days_until_due: '30',
      auto_advance: 'false',
      pending_invoice_items_behavior: 'exclude',
      currency: 'usd',
      metadata: { meterline_invoice_id: invoice.id, meterline_number: invoice.number },
    });
    const itemBodies = fake.handled('POST', '/v1/invoiceitems').slice(1).map((r) => r.body);
    expect(itemBodies[1]).toEqual({
      customer,
      amount: '123456',
      currency: 'usd',
      description: 'API calls: 1,234,560 × $0.001',
      period: { start: String(Date.parse(PERIOD.start) / 1000), end: String(Date.parse(PERIOD.end) / 1000) },
      metadata: { meterline_invoice_id: invoice.id, meterline_line_id: invoice.lines[1]!.id, kind: 'usage', meter: 'api_calls' },
      invoice: stripeInvoice!.id,
    });
    expect(itemBodies.map((b) => b.amount)).toEqual(['4900', '123456', '-1000']);
    expect((itemBodies[0]!.metadata as Record<string, string>).meter).toBeUndefined();

    const ours = fake.invoiceItems().filter((i) => i.metadata.meterline_invoice_id === invoice.id);
    expect(ours.map((i) => i.invoice)).toEqual([stripeInvoice!.id, stripeInvoice!.id, stripeInvoice!.id]);
    expect(fake.invoiceItems().find((i) => i.description === 'not ours')!.invoice).toBeNull();
  });

  it('pushing the same invoice twice creates nothing new', async () => {
    const invoice = makeInvoice('eur', [{ amountMinor: '2500' }, { amountMinor: '990', kind: 'base_fee' }]);
    const first = await sync.push(invoice, customer);
    const writes = posts().length;
    const second = await sync.push(invoice, customer);
    expect(second).toEqual(first);
    expect(posts()).toHaveLength(writes);
    expect(fake.invoices()).toHaveLength(1);
    expect(fake.invoiceItems()).toHaveLength(2);
  });

  it('a push days later, after Stripe forgot the idempotency keys, still creates nothing new', async () => {
    const invoice = makeInvoice('usd', [{ amountMinor: '1000' }]);
    const first = await sync.push(invoice, customer);
    fake.expireIdempotencyKeys();
    expect(await sync.push(invoice, customer)).toEqual(first);
    expect(fake.invoices()).toHaveLength(1);
    expect(fake.invoiceItems()).toHaveLength(1);
  });

  it('retries transient 500s, 429s and dropped connections with the same keys, creating exactly one of each', async () => {
    const invoice = makeInvoice('usd', [{ amountMinor: '100' }, { amountMinor: '200' }, { amountMinor: '300' }]);
    fake.failNext(1, 503, { method: 'GET', path: '/v1/invoices' });
    fake.failNext(2, 500, { method: 'POST', path: '/v1/invoices' });
    fake.failNext(2, 429, { path: '/v1/invoiceitems' });
    // stripe-node retries a dropped connection once by itself; three drops get past it.
    fake.failNext(3, 'drop', { path: /\/finalize$/ });

    const result = await sync.push(invoice, customer);

    expect(result.totalMinor).toBe('600');
    expect(fake.invoices()).toHaveLength(1);
    expect(fake.invoices()[0]!.status).toBe('open');
    expect(fake.invoiceItems()).toHaveLength(3);
    const creates = fake.requests.filter((r) => r.method === 'POST' && r.path === '/v1/invoices');
    expect(creates.map((r) => r.status)).toEqual([500, 500, 200]);
    expect(new Set(creates.map((r) => r.idempotencyKey))).toEqual(new Set([`meterline-invoice-${invoice.id}`]));
    const firstItem = fake.requests.filter((r) => r.idempotencyKey === `meterline-line-${invoice.lines[0]!.id}`);
    expect(firstItem.map((r) => r.status)).toEqual([429, 429, 200]);
    const finalizes = fake.requests.filter((r) => r.path.endsWith('/finalize'));
    expect(finalizes.map((r) => r.status)).toEqual([0, 0, 0, 200]);
    expect(new Set(finalizes.map((r) => r.idempotencyKey))).toEqual(new Set([`meterline-finalize-${invoice.id}`]));
  });

  it('a reply lost after Stripe acted is retried with the same key and replayed, not repeated', async () => {
    const invoice = makeInvoice('usd', [{ amountMinor: '4200' }, { amountMinor: '58' }]);
    // Stripe creates the item, then the connection dies before the reply (twice, to beat stripe-node's own retry).
    fake.failNext(2, 'drop-after-commit', { path: '/v1/invoiceitems' });
    fake.failNext(2, 'drop-after-commit', { path: /\/finalize$/ });

    const result = await sync.push(invoice, customer);

    expect(result).toMatchObject({ totalMinor: '4258', status: 'open' });
    expect(fake.invoices()).toHaveLength(1);
    expect(fake.invoiceItems()).toHaveLength(2);
    const item = fake.requests.filter((r) => r.idempotencyKey === `meterline-line-${invoice.lines[0]!.id}`);
    expect(item.map((r) => [r.status, r.replayed])).toEqual([
      [0, false],
      [0, true],
      [200, true],
    ]);
  });

  it('gives up after the configured attempts with a retryable error, and the next push finishes the job', async () => {
    const invoice = makeInvoice('usd', [{ amountMinor: '1500' }, { amountMinor: '2500' }]);
    const impatient = new StripeSync({ stripe, logger: silentLogger(), retry: { attempts: 3, baseDelayMs: 1 } });
    fake.failNext(3, 502, { path: /\/finalize$/ });

    const err = await rejection(impatient.push(invoice, customer));
    expect(err).toMatchObject({ code: 'STRIPE_UNAVAILABLE', retryable: true, httpStatus: 503 });
    expect(err.message).toMatch(/invoices\.finalizeInvoice failed after 3 attempts/);
    expect(err.details).toMatchObject({ meterlineInvoiceId: invoice.id, stripeStatus: 502, attempts: 3 });
    expect(fake.invoices()[0]!.status).toBe('draft');

    const result = await impatient.push(invoice, customer);
    expect(result).toMatchObject({ totalMinor: '4000', status: 'open' });
    expect(fake.invoices()).toHaveLength(1);
    expect(fake.invoiceItems()).toHaveLength(2);
  });

  it('does not retry a 400: an unknown customer surfaces as STRIPE_REJECTED with Stripe’s reason', async () => {
    const invoice = makeInvoice('usd', [{ amountMinor: '1000' }]);
    const err = await rejection(sync.push(invoice, 'cus_DoesNotExist42'));
    expect(err).toMatchObject({ name: 'StripeSyncError', code: 'STRIPE_REJECTED', retryable: false, httpStatus: 502 });
    expect(err.message).toContain("Stripe rejected invoices.create: No such customer: 'cus_DoesNotExist42'");
    expect(err.message).toContain('HTTP 400');
    expect(err.details).toMatchObject({ meterlineInvoiceId: invoice.id, stripeStatus: 400, stripeCode: 'resource_missing', stripeParam: 'customer', attempts: 1 });
    expect(fake.requests.filter((r) => r.method === 'POST')).toHaveLength(1);
    expect(fake.invoices()).toHaveLength(0);
  });

  it('a 400 half-way leaves a draft that the next push resumes without duplicating items', async () => {
    const invoice = makeInvoice('usd', [{ amountMinor: '100' }, { amountMinor: '200' }, { amountMinor: '300' }]);
    fake.failNext(1, 400, { idempotencyKey: `meterline-line-${invoice.lines[1]!.id}` });

    const err = await rejection(sync.push(invoice, customer));
    expect(err.code).toBe('STRIPE_REJECTED');
    expect(err.details).toMatchObject({ lineId: invoice.lines[1]!.id, attempts: 1 });
    expect(fake.requests.filter((r) => r.path === '/v1/invoiceitems').map((r) => r.status)).toEqual([200, 400]);
    expect(fake.invoices()[0]).toMatchObject({ status: 'draft', total: 100 });

    const result = await sync.push(invoice, customer);
    expect(result).toMatchObject({ totalMinor: '600', status: 'open' });
    expect(fake.invoices()).toHaveLength(1);
    expect(fake.invoiceItems().map((i) => i.amount)).toEqual([100, 200, 300]);
  });

  it('resumes a partial draft after Stripe forgot the keys, adding only the missing items', async () => {
    const invoice = makeInvoice('usd', [{ amountMinor: '100' }, { amountMinor: '200' }, { amountMinor: '300' }]);
    fake.failNext(1, 400, { idempotencyKey: `meterline-line-${invoice.lines[2]!.id}` });
    await rejection(sync.push(invoice, customer));
    const draft = fake.invoices()[0]!;
    expect(draft).toMatchObject({ status: 'draft', total: 300 });
    fake.expireIdempotencyKeys();

    const result = await sync.push(invoice, customer);
    expect(result).toEqual({ stripeInvoiceId: draft.id, totalMinor: '600', status: 'open' });
    expect(fake.invoices()).toHaveLength(1);
    expect(fake.invoiceItems().map((i) => i.amount)).toEqual([100, 200, 300]);
  });

  it('refuses to finalize a draft whose Stripe total differs from Meterline’s, leaving it a draft', async () => {
    const invoice = makeInvoice('usd', [{ amountMinor: '1000' }, { amountMinor: '2000' }]);
    fake.failNext(1, 400, { path: /\/finalize$/ });
    await rejection(sync.push(invoice, customer));
    const draft = fake.invoices()[0]!;
    // Someone adds an item to the draft in the Dashboard.
    await stripe.invoiceItems.create({ customer, invoice: draft.id, amount: 999, currency: 'usd', description: 'manual' });

    const err = await rejection(sync.push(invoice, customer));
    expect(err).toMatchObject({ code: 'STRIPE_TOTAL_MISMATCH', retryable: false });
    expect(err.message).toContain(`Stripe invoice ${draft.id} totals 3999 usd but Meterline invoice ${invoice.id} totals 3000 usd`);
    expect(fake.invoice(draft.id)!.status).toBe('draft');
    expect(fake.requests.filter((r) => r.path.endsWith('/finalize') && r.status === 200)).toHaveLength(0);
  });

  it('reusing an invoice’s keys with other parameters is refused by Stripe and not retried', async () => {
    const invoice = makeInvoice('usd', [{ amountMinor: '1000' }]);
    await sync.push(invoice, customer);
    const other = fake.createCustomer();
    const err = await rejection(sync.push(invoice, other));
    expect(err).toMatchObject({ code: 'STRIPE_REJECTED', retryable: false, details: expect.objectContaining({ stripeType: 'idempotency_error', stripeStatus: 400 }) });
    expect(err.message).toMatch(/same parameters/);
    expect(fake.invoices()).toHaveLength(1);
  });

  it('pushes a zero-amount invoice for the audit trail; Stripe marks it paid on finalization', async () => {
    const invoice = makeInvoice('usd', [
      { kind: 'base_fee', amountMinor: '2000' },
      { kind: 'credit', amountMinor: '-2000' },
    ]);
    const result = await sync.push(invoice, customer);
    expect(result).toMatchObject({ totalMinor: '0', status: 'paid' });
    expect(fake.invoiceItems()).toHaveLength(2);
    expect(fake.invoices()[0]).toMatchObject({ total: 0, amount_due: 0, status: 'paid' });
  });

  it('pushes an invoice with no lines at all', async () => {
    const invoice = makeInvoice('usd', []);
    const result = await sync.push(invoice, customer);
    expect(result).toMatchObject({ totalMinor: '0', status: 'paid' });
    expect(fake.invoiceItems()).toHaveLength(0);
    expect(fake.invoices()).toHaveLength(1);
  });

  it('sends a credit line as a negative amount', async () => {
    const invoice = makeInvoice('usd', [
      { kind: 'usage', amountMinor: '5000', meter: 'tokens' },
      { kind: 'credit', amountMinor: '-1550', description: 'Prepaid credit' },
    ]);
    const result = await sync.push(invoice, customer);
    expect(result).toMatchObject({ totalMinor: '3450', status: 'open' });
    expect(fake.invoiceItems().map((i) => i.amount)).toEqual([5000, -1550]);
    expect(fake.handled('POST', '/v1/invoiceitems')[1]!.body.amount).toBe('-1550');
  });

  it('a negative total (a correction larger than the charges) is finalized and paid, the credit going to the customer balance', async () => {
    const invoice = makeInvoice('usd', [
      { kind: 'usage', amountMinor: '300' },
      { kind: 'correction', amountMinor: '-2300', meter: 'api_calls' },
    ]);
    const result = await sync.push(invoice, customer);
    expect(result).toMatchObject({ totalMinor: '-2000', status: 'paid' });
    expect(fake.invoices()[0]).toMatchObject({ total: -2000, amount_due: 0, ending_balance: -2000 });
  });

  it('sends JPY (no minor unit) amounts as whole yen', async () => {
    const invoice = makeInvoice('JPY', [{ amountMinor: '1500' }, { amountMinor: '98000', kind: 'base_fee' }], 0);
    const result = await sync.push(invoice, customer);
    expect(result).toMatchObject({ totalMinor: '99500', status: 'open' });
    expect(fake.handled('POST', '/v1/invoiceitems').map((r) => [r.body.amount, r.body.currency])).toEqual([
      ['1500', 'jpy'],
      ['98000', 'jpy'],
    ]);
    expect(fake.invoices()[0]).toMatchObject({ currency: 'jpy', total: 99500 });
  });

  it('sends ISK (no ISO minor unit, two-decimal in Stripe) as hundredths and reports the total in Meterline’s units', async () => {
    const invoice = makeInvoice('ISK', [{ amountMinor: '12900' }, { amountMinor: '-900', kind: 'credit' }], 0);
    const result = await sync.push(invoice, customer);
    expect(result).toMatchObject({ totalMinor: '12000', status: 'open' });
    expect(fake.handled('POST', '/v1/invoiceitems').map((r) => r.body.amount)).toEqual(['1290000', '-90000']);
    expect(fake.invoices()[0]).toMatchObject({ currency: 'isk', total: 1200000 });
    expect(await sync.reconcile([{ invoice, stripeInvoiceId: result.stripeInvoiceId }])).toEqual([]);
  });

  it('refuses an invoice that cannot be pushed before sending anything', async () => {
    const invoice = makeInvoice('usd', [{ amountMinor: '100' }]);
    const broken: Invoice = { ...invoice, status: 'draft', totalMinor: '101', lines: [{ ...invoice.lines[0]!, amountMinor: '1.5' }] };
    const err = await rejection(sync.push(broken, customer));
    expect(err.code).toBe('STRIPE_INVOICE_INVALID');
    expect(err.message).toContain('only finalized invoices are pushed');
    expect(err.message).toContain('"1.5" is not an integer number of minor units');
    expect(fake.requests).toHaveLength(0);
  });

  it('reaches the fake through createStripeClient and an API base URL (STRIPE_API_BASE)', async () => {
    const viaConfig = new StripeSync({ stripe: createStripeClient({ apiKey: 'sk_test_meterline', apiBase: fake.url }), logger: silentLogger(), retry: { baseDelayMs: 1 } });
    const invoice = makeInvoice('gbp', [{ amountMinor: '1234' }]);
    expect(await viaConfig.push(invoice, customer)).toMatchObject({ totalMinor: '1234', status: 'open' });
  });
});

describe('reconcile', () => {
  it('reports the invoices whose Stripe total or currency differs, and those missing in Stripe', async () => {
    const clean = makeInvoice('usd', [{ amountMinor: '1000' }]);
    const tampered = makeInvoice('usd', [{ amountMinor: '2000' }, { amountMinor: '500' }]);
    const recurrenced = makeInvoice('eur', [{ amountMinor: '3000' }]);
    const zero = makeInvoice('usd', []);
    const pushed = await Promise.all([clean, tampered, recurrenced, zero].map((inv) => sync.push(inv, customer)));
    fake.tamperInvoice(pushed[1]!.stripeInvoiceId, { total: 2600 });
    fake.tamperInvoice(pushed[2]!.stripeInvoiceId, { currency: 'gbp' });
    const lost = makeInvoice('usd', [{ amountMinor: '700' }]);

    const rows = await sync.reconcile([
      { invoice: clean, stripeInvoiceId: pushed[0]!.stripeInvoiceId },
      { invoice: tampered, stripeInvoiceId: pushed[1]!.stripeInvoiceId },
      { invoice: recurrenced, stripeInvoiceId: pushed[2]!.stripeInvoiceId },
      { invoice: zero, stripeInvoiceId: pushed[3]!.stripeInvoiceId },
      { invoice: lost, stripeInvoiceId: 'in_NeverPushed0001' },
    ]);

    expect(rows).toEqual([
      {
        meterlineInvoiceId: tampered.id,
        stripeInvoiceId: pushed[1]!.stripeInvoiceId,
        problems: ['total_differs'],
        currency: 'usd',
        stripeCurrency: 'usd',
        meterlineTotalMinor: '2500',
        stripeTotalMinor: '2600',
        differenceMinor: '100',
        status: 'open',
      },
      {
        meterlineInvoiceId: recurrenced.id,
        stripeInvoiceId: pushed[2]!.stripeInvoiceId,
        problems: ['currency_differs'],
        currency: 'eur',
        stripeCurrency: 'gbp',
        meterlineTotalMinor: '3000',
        stripeTotalMinor: '3000',
        differenceMinor: null,
        status: 'open',
      },
      {
        meterlineInvoiceId: lost.id,
        stripeInvoiceId: 'in_NeverPushed0001',
        problems: ['missing_in_stripe'],
        currency: 'usd',
        stripeCurrency: null,
        meterlineTotalMinor: '700',
        stripeTotalMinor: null,
        differenceMinor: null,
        status: null,
      },
    ]);
  });

  it('flags a Stripe invoice paired with the wrong Meterline invoice, and a voided one', async () => {
    const a = makeInvoice('usd', [{ amountMinor: '1000' }]);
    const b = makeInvoice('usd', [{ amountMinor: '1000' }]);
    const pa = await sync.push(a, customer);
    const pb = await sync.push(b, customer);
    fake.tamperInvoice(pb.stripeInvoiceId, { status: 'void' });
    const rows = await sync.reconcile([
      { invoice: b, stripeInvoiceId: pa.stripeInvoiceId },
      { invoice: b, stripeInvoiceId: pb.stripeInvoiceId },
    ]);
    expect(rows.map((r) => r.problems)).toEqual([['not_this_invoice'], ['voided_in_stripe']]);
  });

  it('retries transient failures while reading and throws rather than return a partial report', async () => {
    const inv = makeInvoice('usd', [{ amountMinor: '1000' }]);
    const { stripeInvoiceId } = await sync.push(inv, customer);
    fake.failNext(2, 500, { method: 'GET' });
    expect(await sync.reconcile([{ invoice: inv, stripeInvoiceId }])).toEqual([]);
    fake.failNext(99, 503, { method: 'GET' });
    const err = await rejection(sync.reconcile([{ invoice: inv, stripeInvoiceId }]));
    expect(err.code).toBe('STRIPE_UNAVAILABLE');
  });
});
