import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AppError } from '../../common/errors.ts';
import type { CatalogReplica } from '../../common/catalog.ts';
import type { UsageStore } from '../../usage/index.ts';
import {
  CustomerInputSchema,
  type AggregateRow,
  type Billing,
  type Customer,
  type Invoice,
  type Plan,
  type ReconcileRow,
  type Subscription,
} from '../../rater/index.ts';
import type { AppDeps } from '../app.ts';
import { registerCatalogRoutes } from './catalog.ts';
import { isoTime, jsonBody, monthParam, parseWith, sendCsv, sendJsonStream, timeZoneParam, wantsCsv } from '../http.ts';
import { AdjustmentKinds, type Aggregates, type InvoiceHead, type Items, type ProjectedInvoices, STRIPE_SYNC_OFF_MESSAGE, type StripeMismatches } from '../contracts.ts';

export interface BillingRouteDeps {
  billing: Billing;
  customers: CatalogReplica<Customer>;
  plans: CatalogReplica<Plan>;
  subscriptions: CatalogReplica<Subscription>;
  /** Pushes finalized invoices to Stripe and reports differences; absent without STRIPE_API_KEY. */
  stripe?: { status(invoiceId: string): Promise<unknown>; reconcile(): Promise<ReconcileRow[]> };
}

/** A customer as the API takes it: its time zone one Node and ClickHouse both know, stored in its canonical spelling. */
const CustomerInput = CustomerInputSchema.extend({ timeZone: timeZoneParam().default('UTC') });

const obj = { type: 'object', additionalProperties: true } as const;
const tags = ['billing'];

function invoiceCsvRows(inv: Invoice): (string | null)[][] {
  return inv.lines.map((l) => [inv.id, inv.number ?? null, inv.status, inv.customer, inv.currency, inv.periodStart, inv.periodEnd, l.id, l.kind, l.meter ?? null, l.description, l.periodStart, l.periodEnd, l.quantity, l.unitPrice ?? null, l.amount, JSON.stringify(l.breakdown)]);
}
const INVOICE_CSV_HEADER = ['invoice_id', 'number', 'status', 'customer', 'currency', 'period_start', 'period_end', 'line_id', 'kind', 'meter', 'description', 'line_period_start', 'line_period_end', 'quantity', 'unit_price', 'amount', 'breakdown'];

/** Customers, plans, subscriptions, invoices, adjustments, close, finance aggregates. Scope: billing. */
export function registerBillingRoutes(app: FastifyInstance, deps: AppDeps & { usage: UsageStore }, b: BillingRouteDeps): void {
  const scope = { scope: 'billing' as const };

  // ---- customers ----
  app.post('/api/v1/customers', { config: scope, schema: { tags, summary: 'Create a customer (key = the events\' subject)', body: obj, response: { 201: obj, 400: { $ref: 'Error#' }, 409: { $ref: 'Error#' } } } }, async (req, reply) => {
    const input = parseWith(CustomerInput, jsonBody(req));
    const customer: Customer = { ...input, createdAt: new Date().toISOString() };
    await b.customers.create(input.key, customer);
    return reply.status(201).send(customer);
  });
  app.get('/api/v1/customers', { config: scope, schema: { tags, summary: 'List customers', response: { 200: { type: 'array', items: obj } } } }, async () => b.customers.list().sort((x, y) => x.key.localeCompare(y.key)));
  app.get<{ Params: { key: string } }>('/api/v1/customers/:key', { config: scope, schema: { tags, summary: 'Get a customer', response: { 200: obj, 404: { $ref: 'Error#' } } } }, async (req) => b.billing.customer(req.params.key));
  app.put<{ Params: { key: string } }>('/api/v1/customers/:key', { config: scope, schema: { tags, summary: 'Replace a customer (optimistic concurrency on the catalog revision)', body: obj, response: { 200: obj } } }, async (req) => {
    const input = parseWith(CustomerInput, { ...(jsonBody(req) as object), key: req.params.key });
    const cur = await b.customers.getFresh(req.params.key);
    if (!cur) throw new AppError('NOT_FOUND', `no customer "${req.params.key}"`);
    const next: Customer = { ...input, createdAt: cur.value.createdAt };
    await b.customers.update(req.params.key, next, cur.revision);
    return next;
  });
  app.get<{ Params: { key: string } }>('/api/v1/customers/:key/projected-invoice', {
    config: { scope: 'read' },
    schema: { tags, summary: "The customer's current period: invoice so far and projected to period end at the current run rate", response: { 200: obj } },
  }, async (req): Promise<ProjectedInvoices<Invoice>> => {
    b.billing.customer(req.params.key);
    const items = await b.billing.projected(req.params.key, Date.now());
    return { customer: req.params.key, subscriptions: items.map((i) => ({ periodStart: new Date(i.period.start).toISOString(), periodEnd: new Date(i.period.end).toISOString(), elapsedShare: i.elapsedShare, amountSoFar: i.soFar.total, projectedTotal: i.projected.total, currency: i.soFar.currency, soFar: i.soFar, projected: i.projected })) };
  });

  // ---- plans and subscriptions: ./catalog.ts ----
  registerCatalogRoutes(app, deps, b);

  // ---- invoices ----
  const InvoiceQuery = z.object({
    customer: z.string().optional(),
    status: z.enum(['draft', 'finalized']).optional(),
    from: isoTime('from').optional(),
    to: isoTime('to').optional(),
    format: z.enum(['json', 'csv']).optional(),
  });
  app.get<{ Querystring: Record<string, string> }>('/api/v1/invoices', {
    config: scope,
    schema: { tags, summary: 'List invoices (finalized, and drafts in their grace period); JSON or CSV (?format=csv)', querystring: { type: 'object', properties: { customer: { type: 'string' }, status: { type: 'string', enum: ['draft', 'finalized'] }, from: { type: 'string', format: 'date-time', description: 'period start at or after' }, to: { type: 'string', format: 'date-time', description: 'period start before' }, format: { type: 'string', enum: ['json', 'csv'] } } } },
  }, async (req, reply) => {
    const q = parseWith(InvoiceQuery, req.query, 'query');
    const out: Invoice[] = [];
    if (q.status !== 'draft') out.push(...(await b.billing.finalized({ customer: q.customer, periodFromMs: q.from, periodToMs: q.to })).map((s) => s.invoice));
    if (q.status !== 'finalized') out.push(...(await b.billing.drafts(Date.now(), q.customer)).filter((i) => (!q.from || Date.parse(i.periodStart) >= q.from) && (!q.to || Date.parse(i.periodStart) < q.to)));
    if (wantsCsv(req)) return sendCsv(reply, 'invoices.csv', INVOICE_CSV_HEADER, out.flatMap(invoiceCsvRows));
    return { items: out.map(({ lines: _l, ...head }) => ({ ...head, lineCount: _l.length })) } satisfies Items<InvoiceHead<Invoice>>;
  });
  app.get<{ Params: { id: string }; Querystring: Record<string, string> }>('/api/v1/invoices/:id', {
    config: scope,
    schema: { tags, summary: 'An invoice with every line, its quantity, price and tier breakdown; JSON or CSV', querystring: { type: 'object', properties: { format: { type: 'string', enum: ['json', 'csv'] } } }, response: { 404: { $ref: 'Error#' } } },
  }, async (req, reply) => {
    const [stored] = await b.billing.finalized({ id: req.params.id });
    const inv = stored?.invoice ?? (await b.billing.drafts(Date.now())).find((d) => d.id === req.params.id);
    if (!inv) throw new AppError('NOT_FOUND', `no invoice "${req.params.id}"`);
    if (wantsCsv(req)) return sendCsv(reply, `${inv.number ?? inv.id}.csv`, INVOICE_CSV_HEADER, invoiceCsvRows(inv));
    return { ...inv, ...(b.stripe && stored ? { stripe: await b.stripe.status(inv.id) } : {}) };
  });

  app.post('/api/v1/billing/close', {
    config: scope,
    schema: { tags, summary: 'Close (finalize) or preview the periods that start in a month', body: { type: 'object', properties: { period: { type: 'string', description: 'YYYY-MM' }, customer: { type: 'string' }, dryRun: { type: 'boolean' } } } },
  }, async (req, reply) => {
    const input = parseWith(z.object({ period: monthParam(), customer: z.string().optional(), dryRun: z.boolean().default(false) }).strict(), jsonBody(req));
    // Every invoice of the run, in full: written as it is serialized (100,000 invoices are ~400 MB of JSON).
    return sendJsonStream(reply, await b.billing.closeByHand(input.period, { customer: input.customer, dryRun: input.dryRun, nowMs: Date.now() }));
  });

  app.get<{ Querystring: Record<string, string> }>('/api/v1/billing/aggregates', {
    config: scope,
    schema: { tags, summary: "Invoice-ready quantities and amounts per customer and meter for invoices whose period starts in a month, in each customer's own time zone; JSON or CSV", querystring: { type: 'object', required: ['period'], properties: { period: { type: 'string', description: 'YYYY-MM' }, format: { type: 'string', enum: ['json', 'csv'] } } } },
  }, async (req, reply) => {
    const q = parseWith(z.object({ period: monthParam(), format: z.enum(['json', 'csv']).optional() }), req.query, 'query');
    const rows = await b.billing.aggregates(q.period);
    if (wantsCsv(req)) return sendCsv(reply, `aggregates-${q.period}.csv`, ['customer', 'currency', 'meter', 'kind', 'quantity', 'amount', 'amount_minor'], rows.map((r) => [r.customer, r.currency, r.meter, r.kind, r.quantity, r.amount, r.amount_minor]));
    return { period: q.period, rows } satisfies Aggregates<AggregateRow>;
  });

  // ---- adjustments ----
  const AdjustmentInput = z
    .object({
      customer: z.string().min(1),
      kind: z.enum(AdjustmentKinds),
      amount: z.string().regex(/^\d+(\.\d+)?$/, 'amount must be a non-negative decimal string').optional(),
      meter: z.string().optional(),
      quantity: z.string().regex(/^-?\d+(\.\d+)?$/, 'quantity must be a decimal string').optional(),
      periodStart: isoTime('periodStart').optional(),
      expiresAt: isoTime('expiresAt').optional(),
      reasonCode: z.string().regex(/^[a-z0-9_]{1,40}$/, 'reasonCode must be a short snake_case code such as goodwill or duplicate_usage'),
      note: z.string().max(1000).default(''),
    })
    .strict();
  app.post('/api/v1/adjustments', {
    config: scope,
    schema: { tags, summary: 'Append a credit, charge, usage correction or prepaid credit grant (append-only; shown on the next invoice)', body: obj, response: { 201: obj, 400: { $ref: 'Error#' } } },
  }, async (req, reply) => {
    const a = parseWith(AdjustmentInput, jsonBody(req));
    const customer = b.billing.customer(a.customer);
    if (a.kind === 'usage_correction') {
      const meter = a.meter ? deps.meters.get(a.meter) : undefined;
      if (!meter) throw new AppError('REQUEST_INVALID', 'meter: a usage correction names an existing meter');
      if (meter.aggregation !== 'SUM' && meter.aggregation !== 'COUNT') throw new AppError('REQUEST_INVALID', `meter: usage corrections apply to SUM and COUNT meters; "${meter.slug}" is ${meter.aggregation}`);
      if (!a.quantity || !a.periodStart) throw new AppError('REQUEST_INVALID', 'quantity and periodStart (a time inside the period to correct) are required for a usage correction');
    } else if (!a.amount) throw new AppError('REQUEST_INVALID', `amount is required for a ${a.kind}`);
    const actor = req.apiKeyId ?? 'unknown';
    const adj = await b.billing.addAdjustment({
      customer: a.customer,
      kind: a.kind,
      currency: customer.currency,
      amount: a.amount ?? '0',
      meter: a.meter ?? '',
      quantity: a.quantity ?? '0',
      periodStart: a.periodStart !== undefined ? new Date(a.periodStart).toISOString() : null,
      expiresAt: a.expiresAt !== undefined ? new Date(a.expiresAt).toISOString() : null,
      reasonCode: a.reasonCode,
      note: a.note,
      actor,
    });
    return reply.status(201).send(adj);
  });
  app.get<{ Querystring: { customer?: string } }>('/api/v1/adjustments', {
    config: scope,
    schema: { tags, summary: "A customer's adjustments (the audit trail)", querystring: { type: 'object', required: ['customer'], properties: { customer: { type: 'string' } } }, response: { 200: obj } },
  }, async (req) => {
    const q = parseWith(z.object({ customer: z.string().min(1, 'customer is required') }), req.query, 'query');
    return { items: await b.billing.adjustments(q.customer) };
  });

  // Always registered: with Stripe sync off it answers 200 { enabled: false } (a 404 read as a broken route in the dashboard).
  const stripe = b.stripe;
  app.get('/api/v1/billing/stripe/reconcile', {
    config: scope,
    schema: { tags, summary: "Finalized invoices whose Stripe total or currency differs from Meterline's; enabled: false (and a message) when Stripe sync is off", response: { 200: obj } },
  }, async (): Promise<StripeMismatches<ReconcileRow>> => (stripe ? { enabled: true, mismatches: await stripe.reconcile() } : { enabled: false, mismatches: [], message: STRIPE_SYNC_OFF_MESSAGE }));
}
