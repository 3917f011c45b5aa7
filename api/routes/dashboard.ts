import type { FastifyInstance } from 'fastify';
import { Decimal } from '../../common/decimal.ts';
import { z } from 'zod';
import type { UsageStore } from '../../usage/index.ts';
import type { AppDeps } from '../app.ts';
import { accountSummaries, type AccountDeps } from '../accounts.ts';
import { monthParam, parseWith } from '../http.ts';
import { AccountSchema, AccountsPageSchema, WhoAmISchema, type Account, type AccountRow, type AccountsPage, type UsageReconcile, type UsageReconcileRow, type WhoAmI } from '../contracts.ts';
import { AccountsCache, decimalKey } from '../accounts-cache.ts';
import { pageQueryProperties, parsePageQuery, type Listing } from '../pagination.ts';
import { responseSchema } from '../response-schema.ts';
import { localParts } from '../../rater/index.ts';

const DAY = 86_400_000;

const obj = { type: 'object', additionalProperties: true } as const;

/** The customer of a POST /api/v1/adjustments body (JSON text). */
function adjustedCustomer(body: unknown): string | undefined {
  try {
    const c = (JSON.parse(String(body)) as { customer?: unknown }).customer;
    return typeof c === 'string' ? c : undefined;
  } catch {
    return undefined;
  }
}

const FIXED_SORTS = ['key', 'name', 'plan', 'projected', 'alerts'];

/** How the accounts overview sorts (projected total and usage as exact decimals) and searches (key, name). */
export function accountsListing(meterSlugs: string[]): Listing<AccountRow> {
  const usage = Object.fromEntries(meterSlugs.map((slug) => [`usage.${slug}`, (r: AccountRow) => decimalKey(r.usage.find((u) => u.meter === slug)?.value ?? '0')]));
  return {
    sort: {
      key: (r) => r.customer.key,
      name: (r) => r.customer.name,
      plan: (r) => r.subscriptions[0]?.planName,
      projected: (r) => decimalKey(r.projected?.projectedTotal),
      alerts: (r) => r.openAnomalies,
      ...usage,
    },
    defaultSort: 'name',
    search: (r) => [r.customer.key, r.customer.name],
  };
}

/**
 * Aggregate reads the dashboard needs in one request each (no N+1 from the browser): who the
 * signed-in key is, every account's current period at a glance, and metered vs invoiced usage.
 */
export function registerDashboardRoutes(app: FastifyInstance, deps: AppDeps & { usage: UsageStore }): void {
  app.get('/api/v1/whoami', {
    config: { anyKey: true },
    schema: {
      tags: ['access'],
      summary: 'The API key making the request: its id, name and scopes (never the key); any valid key',
      response: { 200: responseSchema(WhoAmISchema) },
    },
  }, async (req): Promise<WhoAmI> => {
    const k = req.apiKey!;
    return { id: k.id, name: k.name, scopes: k.scopes, prefix: k.prefix };
  });

  const b = deps.billing;
  if (!b) return;
  const accountDeps: AccountDeps = { usage: deps.usage, meters: deps.meters, billing: b.billing, customers: b.customers, plans: b.plans, subscriptions: b.subscriptions, anomalies: deps.anomalies?.anomalies, logger: deps.logger, pricing: deps.accounts?.pricing };

  // The overview of every customer is served from memory, refreshed incrementally (api/accounts-cache.ts).
  const cache = new AccountsCache({ ...accountDeps, registry: deps.metrics.registry }, deps.accounts?.cache);
  cache.start();
  app.addHook('onClose', () => cache.stop());
  // Writes through this process that change summaries without a catalog or usage change are seen
  // at the next refresh; the same writes through another process, at the next full refresh.
  app.addHook('onResponse', async (req, reply) => {
    if (req.method !== 'POST' || reply.statusCode >= 300) return;
    if (req.routeOptions.url === '/api/v1/adjustments') {
      const customer = adjustedCustomer(req.body);
      if (customer) cache.invalidate(customer);
    } else if (req.routeOptions.url === '/api/v1/billing/close') cache.invalidateAll();
  });
  app.get<{ Querystring: Record<string, string> }>('/api/v1/accounts', {
    config: { scope: 'read' },
    schema: {
      tags: ['dashboard'],
      summary: "A page of customers' current periods at a glance: usage per meter so far, projected invoice, open anomalies; sorted and searched on the server",
      description:
        'Served from the accounts cache: `asOf` is its last refresh (every few seconds; only customers whose usage, catalog entries, anomalies or period changed are recomputed), each item says when it was computed (`computedAt`). ' +
        'Usage values are exact decimal strings over [period start, computedAt rounded up to the minute). ' +
        `sort: ${FIXED_SORTS.join(', ')}, or usage.<meter slug>; q searches key and name. Before the first build has finished: 503, retry.`,
      querystring: { type: 'object', properties: pageQueryProperties(accountsListing([]) as unknown as Listing<unknown>) },
      response: { 200: responseSchema(AccountsPageSchema), 400: { $ref: 'Error#' }, 503: { $ref: 'Error#' } },
    },
  }, async (req): Promise<AccountsPage> => {
    const listing = accountsListing(deps.meters.list().map((m) => m.slug));
    return cache.page(listing, parsePageQuery(listing, req.query));
  });

  app.get<{ Params: { customer: string } }>('/api/v1/accounts/:customer', {
    config: { scope: 'read' },
    schema: { tags: ['dashboard'], summary: "One customer's current period at a glance (as in GET /api/v1/accounts)", response: { 200: responseSchema(AccountSchema), 404: { $ref: 'Error#' } } },
  }, async (req): Promise<Account> => {
    b.billing.customer(req.params.customer);
    const r = await accountSummaries(accountDeps, [req.params.customer], Date.now());
    return { asOf: r.asOf, ...r.items[0]! };
  });

  app.get<{ Querystring: Record<string, string> }>('/api/v1/billing/usage-reconcile', {
    config: { scope: 'billing' },
    schema: {
      tags: ['billing'],
      summary: "Metered vs invoiced usage per finalized invoice and meter, for invoices whose period starts in a month (in the customer's time zone, as billing close counts it)",
      description:
        'For SUM and COUNT meters: metered (every event now stored for the customer in the invoice period) + usage corrections (adjustments) must equal invoiced (usage lines) + corrected (correction lines for that period on later invoices). ' +
        'status: ok; pending (more usage arrived after the cutoff and no later invoice is finalized yet: it will be a correction on the next one); mismatch; not_additive (other aggregations).',
      querystring: { type: 'object', required: ['period'], properties: { period: { type: 'string', description: 'YYYY-MM' }, customer: { type: 'string' } } },
      response: { 200: obj },
    },
  }, async (req): Promise<UsageReconcile> => {
    const q = parseWith(z.object({ period: monthParam(), customer: z.string().optional() }), req.query, 'query');
    const [y, m] = q.period.split('-').map(Number) as [number, number];
    // A period "starts in the month" in the customer's zone (Berlin's 1st is the 31st in UTC): widen, then filter.
    const inLocalMonth = (inv: { customer: string; periodStart: string }) => {
      const p = localParts(Date.parse(inv.periodStart), b.customers.get(inv.customer)?.timeZone ?? 'UTC');
      return p.y === y && p.m === m - 1;
    };
    const invoices = (await b.billing.finalized({ customer: q.customer, periodFromMs: Date.UTC(y, m - 1, 1) - 2 * DAY, periodToMs: Date.UTC(y, m, 1) + 2 * DAY })).filter((s) => inLocalMonth(s.invoice));
    const rows: UsageReconcileRow[] = [];
    for (const { invoice: inv, subscriptionId } of invoices) {
      const ps = Date.parse(inv.periodStart);
      const pe = Date.parse(inv.periodEnd);
      const later = (await b.billing.finalized({ customer: inv.customer, periodFromMs: pe })).filter((s) => s.subscriptionId === subscriptionId).map((s) => s.invoice);
      const adjustments = (await b.billing.adjustments(inv.customer)).filter((a) => a.kind === 'usage_correction' && a.periodStart !== null && Date.parse(a.periodStart) >= ps && Date.parse(a.periodStart) < pe);
      const meterSlugs = [...new Set(inv.lines.filter((l) => l.kind === 'usage' && l.meter).map((l) => l.meter!))].sort();
      for (const slug of meterSlugs) {
        const meter = deps.meters.get(slug);
        const invoiced = inv.lines.filter((l) => l.kind === 'usage' && l.meter === slug).reduce((acc, l) => acc.plus(l.quantity), new Decimal(0));
        const correctionLines = later.flatMap((i) => i.lines.filter((l) => l.kind === 'correction' && l.meter === slug && Date.parse(l.periodStart) >= ps && Date.parse(l.periodStart) < pe).map((l) => ({ invoice: i.id, number: i.number ?? null, quantity: l.quantity })));
        const corrected = correctionLines.reduce((acc, l) => acc.plus(l.quantity), new Decimal(0));
        const adjusted = adjustments.filter((a) => a.meter === slug).reduce((acc, a) => acc.plus(a.quantity), new Decimal(0));
        const base = { customer: inv.customer, timeZone: b.customers.get(inv.customer)?.timeZone ?? 'UTC', invoiceId: inv.id, number: inv.number ?? null, periodStart: inv.periodStart, periodEnd: inv.periodEnd, meter: slug, invoiced: invoiced.toFixed(), corrected: corrected.toFixed(), corrections: correctionLines, usageCorrections: adjusted.toFixed() };
        if (!meter || (meter.aggregation !== 'SUM' && meter.aggregation !== 'COUNT')) {
          rows.push({ ...base, aggregation: meter?.aggregation ?? null, metered: null, difference: null, status: 'not_additive' });
          continue;
        }
        const usage = await deps.usage.query(meter, { fromMs: ps, toMs: pe, timeZone: 'UTC', subjects: [inv.customer], groupBy: [], filterGroupBy: {} });
        const metered = new Decimal(usage.data[0]?.value ?? '0');
        const difference = metered.plus(adjusted).minus(invoiced).minus(corrected);
        const status = difference.isZero() ? 'ok' : difference.gt(0) && later.length === 0 ? 'pending' : 'mismatch';
        rows.push({ ...base, aggregation: meter.aggregation, metered: metered.toFixed(), difference: difference.toFixed(), status });
      }
    }
    rows.sort((x, y) => x.customer.localeCompare(y.customer) || x.periodStart.localeCompare(y.periodStart) || x.meter.localeCompare(y.meter));
    return { period: q.period, ok: rows.every((r) => r.status === 'ok' || r.status === 'pending' || r.status === 'not_additive'), rows };
  });
}
