import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { AppError } from '../../common/errors.ts';
import type { Invoice } from '../../rater/index.ts';
import type { AppDeps } from '../app.ts';
import { accountSummaries } from '../accounts.ts';
import { isoTime, jsonBody, parseWith, stringList, timeZoneParam } from '../http.ts';
import { canonicalTimeZone, USAGE_QUERY_LIMITS_TEXT, WindowSizes, type UsageStore } from '../../usage/index.ts';
import type { BillingRouteDeps } from './billing.ts';
import { PortalTokenCreatedSchema, PortalTokenRecordSchema, type Account, type InvoiceHead, type Items, type PortalAlert, type PortalMeter, type PortalTokenCreated, type ProjectedInvoices } from '../contracts.ts';
import { responseSchema } from '../response-schema.ts';

const obj = { type: 'object', additionalProperties: true } as const;
const portal = { portal: true } as const;
/** Portal routes are opened by a portal token, not an API key. */
const security = [{ portalToken: [] }];
const tags = ['portal'];

const TokenInput = z
  .object({
    customer: z.string().min(1, 'customer is required'),
    name: z.string().min(1).max(200).optional(),
    expiresAt: isoTime('expiresAt').optional(),
  })
  .strict();

const PortalUsageQuery = z
  .object({
    from: isoTime('from').optional(),
    to: isoTime('to').optional(),
    windowSize: z.enum(WindowSizes, { errorMap: () => ({ message: `windowSize must be one of ${WindowSizes.join(', ')}` }) }).optional(),
    windowTimeZone: timeZoneParam().optional(),
    groupBy: stringList,
    customer: z.string().optional(),
    subject: z.string().optional(),
  })
  .strict();

/** The customer the portal token is bound to; the auth hook set it (a route reached without it is a bug). */
function portalCustomer(req: FastifyRequest): string {
  if (!req.portalCustomer) throw new AppError('AUTH_FORBIDDEN', 'portal routes take a customer-portal token');
  return req.portalCustomer;
}

/** Anomalies as the customer sees them: what happened and its state; not who handled it internally. */
const publicAlert = (a: PortalAlert): PortalAlert => ({
  id: a.id,
  kind: a.kind,
  severity: a.severity,
  status: a.status,
  meter: a.meter,
  message: a.message,
  windowStart: a.windowStart,
  windowEnd: a.windowEnd,
  firstDetectedAt: a.firstDetectedAt,
  lastDetectedAt: a.lastDetectedAt,
});

/**
 * Portal tokens (admin) and the customer portal's routes. Every `/api/v1/portal/...` route is
 * `config.portal`: the auth hook admits only a portal token, sets `req.portalCustomer`, and
 * refuses any `customer`/`subject` parameter naming someone else. Handlers read the customer
 * from the token only, and a lookup by id (an invoice) of another customer's object is a 404.
 */
export function registerPortalRoutes(app: FastifyInstance, deps: AppDeps & { usage: UsageStore }, b: BillingRouteDeps): void {
  const tokens = deps.portalTokens;
  const tokenSchema = responseSchema(PortalTokenRecordSchema);
  if (tokens) {
    app.post('/api/v1/portal-tokens', {
      config: { scope: 'admin' },
      schema: {
        tags: ['access'],
        summary: 'Create a customer-portal token (mlp_..., shown once) bound to one customer',
        body: { type: 'object', required: ['customer'], properties: { customer: { type: 'string' }, name: { type: 'string' }, expiresAt: { type: 'string', format: 'date-time' } } },
        response: { 201: responseSchema(PortalTokenCreatedSchema), 400: { $ref: 'Error#' }, 404: { $ref: 'Error#' } },
      },
    }, async (req, reply) => {
      const input = parseWith(TokenInput, jsonBody(req));
      b.billing.customer(input.customer);
      if (input.expiresAt !== undefined && input.expiresAt <= Date.now()) throw new AppError('REQUEST_INVALID', 'expiresAt must be in the future', { details: { errors: [{ field: 'body.expiresAt', reason: 'must be in the future' }] } });
      const { token, record } = await tokens.create({ customer: input.customer, name: input.name, expiresAt: input.expiresAt !== undefined ? new Date(input.expiresAt).toISOString() : null, createdBy: req.apiKeyId ?? 'unknown' });
      // The token travels in the fragment: browsers never send it to a server or log it.
      return reply.status(201).send({ token, portalUrl: `/ui/portal/#token=${token}`, record } satisfies PortalTokenCreated);
    });
    app.get<{ Querystring: { customer?: string } }>('/api/v1/portal-tokens', {
      config: { scope: 'admin' },
      schema: { tags: ['access'], summary: 'List portal tokens (never the tokens themselves)', querystring: { type: 'object', properties: { customer: { type: 'string' } } }, response: { 200: { type: 'array', items: tokenSchema } } },
    }, async (req) => tokens.list(req.query.customer));
    app.delete<{ Params: { id: string } }>('/api/v1/portal-tokens/:id', { config: { scope: 'admin' }, schema: { tags: ['access'], summary: 'Revoke a portal token (it stops working at once)' } }, async (req, reply) => {
      if (!(await tokens.revoke(req.params.id))) throw new AppError('NOT_FOUND', `no portal token with id ${req.params.id}`);
      return reply.status(204).send();
    });
  }

  const accountDeps = { usage: deps.usage, meters: deps.meters, billing: b.billing, customers: b.customers, plans: b.plans, subscriptions: b.subscriptions, anomalies: deps.anomalies?.anomalies, logger: deps.logger };
  /** Meters on the customer's plans (all meters if it has no subscription). */
  const customerMeters = (customer: string) => {
    const charged = new Set(b.subscriptions.list().filter((s) => s.customer === customer).flatMap((s) => s.phases.flatMap((p) => b.plans.get(p.plan)?.charges.map((c) => c.meter) ?? [])));
    return deps.meters.list().filter((m) => charged.size === 0 || charged.has(m.slug)).sort((x, y) => x.slug.localeCompare(y.slug));
  };
  const customerParam = { customer: { type: 'string', description: "optional; must be the token's own customer (anything else: 403)" } };

  app.get<{ Querystring: Record<string, string> }>('/api/v1/portal/account', {
    config: portal,
    schema: { tags, security, summary: "The token's customer: name, currency, time zone, current period, usage so far, projected total, open alerts", querystring: { type: 'object', properties: customerParam }, response: { 200: obj } },
  }, async (req): Promise<Account> => {
    const customer = portalCustomer(req);
    const r = await accountSummaries(accountDeps, [customer], Date.now());
    const item = r.items[0];
    if (!item) throw new AppError('NOT_FOUND', 'this portal token names a customer that no longer exists');
    const meters = new Set(customerMeters(customer).map((m) => m.slug));
    return { asOf: r.asOf, ...item, usage: item.usage.filter((u) => meters.has(u.meter)) };
  });

  app.get<{ Querystring: Record<string, string> }>('/api/v1/portal/meters', {
    config: portal,
    schema: { tags, security, summary: "The meters on the customer's plans", querystring: { type: 'object', properties: customerParam }, response: { 200: { type: 'array', items: obj } } },
  }, async (req) => customerMeters(portalCustomer(req)).map((m): PortalMeter => ({ slug: m.slug, name: m.name ?? m.slug, aggregation: m.aggregation, groupBy: Object.keys(m.groupBy ?? {}) })));

  app.get<{ Params: { meter: string }; Querystring: Record<string, string | string[]> }>('/api/v1/portal/meters/:meter/query', {
    config: portal,
    schema: {
      tags,
      security,
      summary: "The customer's own usage of a meter (as GET /api/v1/meters/{meter}/query, for this customer only)",
      description: `windowTimeZone defaults to the customer's time zone. ${USAGE_QUERY_LIMITS_TEXT}`,
      querystring: { type: 'object', properties: { from: { type: 'string', format: 'date-time' }, to: { type: 'string', format: 'date-time' }, windowSize: { type: 'string', enum: [...WindowSizes] }, windowTimeZone: { type: 'string', description: "IANA time zone of the windows, in any case; default: the customer's" }, groupBy: { type: 'array', items: { type: 'string' } }, ...customerParam, subject: { type: 'string', description: "optional; must be the token's own customer" } } },
      response: { 200: obj, 400: { $ref: 'Error#' }, 404: { $ref: 'Error#' }, 503: { $ref: 'Error#' } },
    },
  }, async (req) => {
    const customer = portalCustomer(req);
    const meter = customerMeters(customer).find((m) => m.slug === req.params.meter);
    if (!meter) throw new AppError('METER_NOT_FOUND', `no meter "${req.params.meter}" on your plan`);
    const q = parseWith(PortalUsageQuery, req.query, 'query');
    const keys = Object.keys(meter.groupBy ?? {});
    for (const g of q.groupBy) if (!keys.includes(g)) throw new AppError('QUERY_INVALID', `groupBy "${g}" is not a dimension of meter "${meter.slug}"; it has: ${keys.join(', ') || 'none'}`);
    const toMs = q.to ?? Math.ceil(Date.now() / 60_000) * 60_000;
    const fromMs = q.from ?? 0;
    if (fromMs >= toMs) throw new AppError('QUERY_INVALID', 'from must be before to');
    // A customer stored before zones were checked against ClickHouse may name one in another case: use its canonical spelling.
    const stored = b.billing.customer(customer).timeZone;
    const tz = q.windowTimeZone ?? canonicalTimeZone(stored) ?? stored;
    return deps.usage.query(meter, { fromMs, toMs, windowSize: q.windowSize, timeZone: tz, subjects: [customer], groupBy: q.groupBy, filterGroupBy: {} }, { fromGiven: q.from !== undefined, bounded: { tzParam: 'windowTimeZone' } });
  });

  app.get<{ Querystring: Record<string, string> }>('/api/v1/portal/projected-invoice', {
    config: portal,
    schema: { tags, security, summary: "The customer's current period: invoice so far and projected to period end", querystring: { type: 'object', properties: customerParam }, response: { 200: obj } },
  }, async (req): Promise<ProjectedInvoices<Invoice>> => {
    const customer = portalCustomer(req);
    const items = await b.billing.projected(customer, Date.now());
    return { customer, subscriptions: items.map((i) => ({ periodStart: new Date(i.period.start).toISOString(), periodEnd: new Date(i.period.end).toISOString(), elapsedShare: i.elapsedShare, amountSoFar: i.soFar.total, projectedTotal: i.projected.total, currency: i.soFar.currency, soFar: i.soFar, projected: i.projected })) };
  });

  const customerInvoices = async (customer: string): Promise<Invoice[]> => [...(await b.billing.finalized({ customer })).map((s) => s.invoice), ...(await b.billing.drafts(Date.now(), customer))];
  app.get<{ Querystring: Record<string, string> }>('/api/v1/portal/invoices', {
    config: portal,
    schema: { tags, security, summary: "The customer's invoices (finalized, and drafts in their grace period), newest first", querystring: { type: 'object', properties: customerParam }, response: { 200: obj } },
  }, async (req): Promise<Items<InvoiceHead<Invoice>>> => {
    const list = await customerInvoices(portalCustomer(req));
    return { items: list.sort((x, y) => y.periodStart.localeCompare(x.periodStart)).map(({ lines, ...head }) => ({ ...head, lineCount: lines.length })) };
  });
  app.get<{ Params: { id: string } }>('/api/v1/portal/invoices/:id', {
    config: portal,
    schema: { tags, security, summary: 'One of the customer\'s invoices with every line and its tier breakdown (another customer\'s id: 404)', response: { 200: obj, 404: { $ref: 'Error#' } } },
  }, async (req) => {
    const customer = portalCustomer(req);
    const [stored] = await b.billing.finalized({ id: req.params.id, customer });
    const inv = stored?.invoice ?? (await b.billing.drafts(Date.now(), customer)).find((d) => d.id === req.params.id);
    // Same answer whether the id does not exist or belongs to someone else: nothing leaks.
    if (!inv || inv.customer !== customer) throw new AppError('NOT_FOUND', `no invoice "${req.params.id}"`);
    return inv;
  });

  app.get<{ Querystring: Record<string, string> }>('/api/v1/portal/anomalies', {
    config: portal,
    schema: { tags, security, summary: "The customer's usage alerts (spikes, drops, gaps, thresholds, bill shock), newest first", querystring: { type: 'object', properties: customerParam }, response: { 200: obj } },
  }, async (req): Promise<Items<PortalAlert>> => {
    const customer = portalCustomer(req);
    const items = deps.anomalies ? await deps.anomalies.anomalies.list({ customer, limit: 200 }) : [];
    return { items: items.filter((a) => a.customer === customer).map(publicAlert) };
  });
}
