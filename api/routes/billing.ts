import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AppError } from '../../common/errors.ts';
import type { CatalogReplica } from '../../common/catalog.ts';
import type { UsageStore } from '../../usage/index.ts';
import { Decimal } from '../../common/decimal.ts';
import {
  CustomerInputSchema,
  InvoiceSorts,
  type Adjustment,
  type AggregateRow,
  type ClickHouseInvoiceStore,
  type InvoiceSort,
  type Billing,
  type Customer,
  type Invoice,
  type Plan,
  type ReconcileRow,
  type Subscription,
} from '../../rater/index.ts';
import type { AppDeps } from '../app.ts';
import { registerCatalogRoutes } from './catalog.ts';
import { pageQuerystring, pageResponse } from '../listing.ts';
import { paginate, parsePageQuery, type Listing, type Page, type PageQuery } from '../pagination.ts';
import { isoTime, jsonBody, monthParam, parseWith, sendCsv, sendJsonStream, timeZoneParam, wantsCsv } from '../http.ts';
import { AdjustmentKinds, type Aggregates, type InvoiceHead, type ProjectedInvoices, STRIPE_SYNC_OFF_MESSAGE, type StripeMismatches } from '../contracts.ts';

export interface BillingRouteDeps {
  billing: Billing;
  customers: CatalogReplica<Customer>;
  plans: CatalogReplica<Plan>;
  subscriptions: CatalogReplica<Subscription>;
  /** Pages of finalized invoices in SQL (the rater's ClickHouseInvoiceStore); absent: paged in memory. */
  invoicePages?: Pick<ClickHouseInvoiceStore, 'page'>;
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

const customerListing: Listing<Customer> = { sort: { key: (c) => c.key, name: (c) => c.name, createdAt: (c) => c.createdAt }, defaultSort: 'key', search: (c) => [c.key, c.name] };
const adjustmentListing: Listing<Adjustment> = { sort: { createdAt: (a) => a.createdAt, kind: (a) => a.kind }, defaultSort: 'createdAt', search: (a) => [a.id, a.kind, a.reasonCode, a.note] };
/** The invoices listing's parameters (the order itself is SQL's for finalized invoices, `compareInvoices` for drafts). */
const invoiceListing: Listing<Invoice> = { sort: Object.fromEntries(InvoiceSorts.map((k) => [k, () => undefined])), defaultSort: 'periodStart', search: (i) => [i.id, i.number ?? undefined, i.customer] };

/** Drafts in the order a sort key asks for, totals compared exactly; ties by id. */
function compareInvoices(sort: InvoiceSort, x: Invoice, y: Invoice): number {
  const c =
    sort === 'total' ? new Decimal(x.total).comparedTo(y.total)
    : sort === 'customer' ? x.customer.localeCompare(y.customer)
    : sort === 'number' ? (x.number ?? '').localeCompare(y.number ?? '')
    : sort === 'issuedAt' ? (x.issuedAt ?? '').localeCompare(y.issuedAt ?? '')
    : x.periodStart.localeCompare(y.periodStart);
  return c || x.id.localeCompare(y.id);
}

/**
 * A page of invoices: the matching drafts (few: periods in their grace period, computed now)
 * come first, then the finalized invoices, paged in ClickHouse when the route has the store.
 */
async function invoicePage(b: BillingRouteDeps, f: { customer?: string; status?: string; from?: number; to?: number }, drafts: Invoice[], pq: PageQuery): Promise<Page<Invoice>> {
  const sort = pq.sort as InvoiceSort;
  const dir = pq.order === 'desc' ? -1 : 1;
  const needle = pq.q?.toLowerCase();
  const shownDrafts = drafts.filter((i) => !needle || invoiceListing.search!(i).some((t) => t?.toLowerCase().includes(needle))).sort((x, y) => dir * compareInvoices(sort, x, y));
  const from = (pq.page - 1) * pq.pageSize;
  const items = shownDrafts.slice(from, from + pq.pageSize);
  if (f.status === 'draft') return { items, page: pq.page, pageSize: pq.pageSize, totalCount: shownDrafts.length };
  const offset = Math.max(0, from - shownDrafts.length);
  const limit = pq.pageSize - items.length;
  const filter = { customer: f.customer, periodFromMs: f.from, periodToMs: f.to };
  const finalized = b.invoicePages
    ? await b.invoicePages.page({ ...filter, q: pq.q, sort, order: pq.order, offset, limit })
    : ((all: Invoice[]) => ({ invoices: all.slice(offset, offset + limit), totalCount: all.length }))(
        (await b.billing.finalized(filter)).map((s) => s.invoice).filter((i) => !needle || invoiceListing.search!(i).some((t) => t?.toLowerCase().includes(needle))).sort((x, y) => dir * compareInvoices(sort, x, y)),
      );
  return { items: [...items, ...finalized.invoices], page: pq.page, pageSize: pq.pageSize, totalCount: shownDrafts.length + finalized.totalCount };
}

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
  app.get<{ Querystring: Record<string, string> }>('/api/v1/customers', {
    config: scope,
    schema: { tags, summary: 'List customers, a page at a time (sort: key, name, createdAt; q: key or name)', querystring: pageQuerystring(customerListing), response: { 200: pageResponse(obj), 400: { $ref: 'Error#' } } },
  }, async (req): Promise<Page<Customer>> => paginate(b.customers.list(), customerListing, parsePageQuery(customerListing, req.query)));
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
    schema: {
      tags,
      summary: 'List invoices a page at a time: drafts in their grace period first, then finalized ones (paged in ClickHouse); JSON, or CSV of every matching invoice (?format=csv)',
      description: `sort: ${InvoiceSorts.join(', ')} (default periodStart); q: a substring of the id, number or customer.`,
      querystring: pageQuerystring(invoiceListing, { customer: { type: 'string' }, status: { type: 'string', enum: ['draft', 'finalized'] }, from: { type: 'string', format: 'date-time', description: 'period start at or after' }, to: { type: 'string', format: 'date-time', description: 'period start before' }, format: { type: 'string', enum: ['json', 'csv'] } }),
      response: { 200: pageResponse(obj), 400: { $ref: 'Error#' } },
    },
  }, async (req, reply) => {
    const q = parseWith(InvoiceQuery, req.query, 'query');
    const drafts = q.status === 'finalized' ? [] : (await b.billing.drafts(Date.now(), q.customer)).filter((i) => (!q.from || Date.parse(i.periodStart) >= q.from) && (!q.to || Date.parse(i.periodStart) < q.to));
    if (wantsCsv(req)) {
      const finalized = q.status === 'draft' ? [] : (await b.billing.finalized({ customer: q.customer, periodFromMs: q.from, periodToMs: q.to })).map((s) => s.invoice);
      return sendCsv(reply, 'invoices.csv', INVOICE_CSV_HEADER, [...finalized, ...drafts].flatMap(invoiceCsvRows));
    }
    const page = await invoicePage(b, q, drafts, parsePageQuery(invoiceListing, req.query));
    return { ...page, items: page.items.map(({ lines: _l, ...head }) => ({ ...head, lineCount: _l.length })) } satisfies Page<InvoiceHead<Invoice>>;
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
  app.get<{ Querystring: Record<string, string> }>('/api/v1/adjustments', {
    config: scope,
    schema: { tags, summary: "A customer's adjustments (the audit trail), a page at a time (sort: createdAt, kind; q: id, kind, reason code or note)", querystring: { ...pageQuerystring(adjustmentListing, { customer: { type: 'string' } }), required: ['customer'] }, response: { 200: pageResponse(obj), 400: { $ref: 'Error#' } } },
  }, async (req): Promise<Page<Adjustment>> => {
    const q = parseWith(z.object({ customer: z.string().min(1, 'customer is required') }), req.query, 'query');
    return paginate(await b.billing.adjustments(q.customer), adjustmentListing, parsePageQuery(adjustmentListing, req.query));
  });

  // Always registered: with Stripe sync off it answers 200 { enabled: false } (a 404 read as a broken route in the dashboard).
  const stripe = b.stripe;
  app.get('/api/v1/billing/stripe/reconcile', {
    config: scope,
    schema: { tags, summary: "Finalized invoices whose Stripe total or currency differs from Meterline's; enabled: false (and a message) when Stripe sync is off", response: { 200: obj } },
  }, async (): Promise<StripeMismatches<ReconcileRow>> => (stripe ? { enabled: true, mismatches: await stripe.reconcile() } : { enabled: false, mismatches: [], message: STRIPE_SYNC_OFF_MESSAGE }));
}
