import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { CatalogReplica } from '../../common/catalog.ts';
import { AppError } from '../../common/errors.ts';
import {
  appendVersion,
  CancelSchema,
  changePlan,
  MigrateSchema,
  PlanChangeSchema,
  PlanInputSchema,
  planVersion,
  planView,
  PreviewDraftSchema,
  SubscriptionInputSchema,
  SubscriptionTermsSchema,
  versionAt,
  versionsOf,
  type Plan,
  type PlanInput,
  type Subscription,
} from '../../rater/index.ts';
import type { AppDeps } from '../app.ts';
import { isoTime, jsonBody, parseWith } from '../http.ts';
import { paginate, pageQueryProperties, parsePageQuery, type Listing } from '../pagination.ts';
import type { BillingRouteDeps } from './billing.ts';

/**
 * Plans (with versions), subscriptions (plan changes, migrations between versions, cancel,
 * overrides) and the invoice preview of a draft change. Scope: billing. docs/catalog.md
 * documents the rules (what a version may change, what a migration bills).
 */

const obj = { type: 'object', additionalProperties: true } as const;
const err = { $ref: 'Error#' } as const;
const tags = ['billing'];
const scope = { scope: 'billing' as const };

const planListing: Listing<Plan> = {
  sort: { key: (p) => p.key, name: (p) => p.name, createdAt: (p) => p.createdAt },
  defaultSort: 'key',
  search: (p) => [p.key, p.name],
};
const subscriptionListing: Listing<Subscription> = {
  sort: { id: (s) => s.id, customer: (s) => s.customer, createdAt: (s) => s.createdAt, start: (s) => s.phases[0]?.start },
  defaultSort: 'id',
  search: (s) => [s.id, s.customer, ...s.phases.map((p) => p.plan)],
};

/**
 * Resolves once `replica` holds a value for `key` that `matches` (at most `timeoutMs`): an
 * update goes to KV and reaches the replica through its watch, and the caller's next GET reads
 * the replica. Waiting here gives the caller its own write back (read-your-writes).
 */
export function replicaCaughtUp<T>(replica: CatalogReplica<T>, key: string, matches: (v: T | undefined) => boolean, timeoutMs = 5000): Promise<void> {
  if (matches(replica.get(key))) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      off();
      resolve();
    };
    const off = replica.onChange((k, next) => k === key && matches(next) && done());
    const timer = setTimeout(done, timeoutMs);
  });
}

/** Every charge's meter exists; else 400 naming the charge. */
function checkMeters(deps: Pick<AppDeps, 'meters'>, input: PlanInput, field = 'body'): void {
  input.charges.forEach((c, i) => {
    if (!deps.meters.get(c.meter)) throw new AppError('REQUEST_INVALID', `invalid body: ${field}.charges.${i}.meter: meter "${c.meter}" of charge "${c.key}" does not exist; create it first`);
  });
}

/** The publishing fields of a new version's body (the rest is the definition). */
const VersionMeta = z.object({ effectiveFrom: isoTime('effectiveFrom'), expectedVersion: z.number().int('must be a version number').min(1, 'must be a version number').optional() }).passthrough();

/** A plan definition from a body whose key is the path's: field errors name `body.<field>`. */
function planInput(body: unknown, key: string): PlanInput {
  const { effectiveFrom: _e, expectedVersion: _v, ...rest } = (body && typeof body === 'object' ? body : {}) as Record<string, unknown>;
  return parseWith(PlanInputSchema, { ...rest, key });
}

export function registerCatalogRoutes(app: FastifyInstance, deps: AppDeps, b: BillingRouteDeps): void {
  const plan = (key: string): Plan => {
    const p = b.plans.get(key);
    if (!p) throw new AppError('NOT_FOUND', `no plan "${key}"; list plans with GET /api/v1/plans`);
    return p;
  };

  // ---- plans ----
  app.post('/api/v1/plans', { config: scope, schema: { tags, summary: 'Create a plan (its version 1): base fee and usage charges with prices', body: obj, response: { 201: obj, 400: err, 409: err } } }, async (req, reply) => {
    const input = parseWith(PlanInputSchema, jsonBody(req));
    checkMeters(deps, input);
    const now = new Date().toISOString();
    const stored: Plan = { ...input, createdAt: now, version: 1, effectiveFrom: now, versions: [{ ...input, version: 1, effectiveFrom: now, createdAt: now }] };
    await b.plans.create(input.key, stored);
    return reply.status(201).send(planView(stored, Date.now()));
  });
  app.get<{ Querystring: Record<string, string> }>('/api/v1/plans', {
    config: scope,
    schema: { tags, summary: 'List plans, a page at a time: each as the version in force now, with its versions listed', querystring: { type: 'object', properties: pageQueryProperties(planListing as Listing<unknown>) }, response: { 200: obj, 400: err } },
  }, async (req) => {
    const page = paginate(b.plans.list(), planListing, parsePageQuery(planListing, req.query));
    const now = Date.now();
    return { ...page, items: page.items.map((p) => planView(p, now)) };
  });
  app.get<{ Params: { key: string } }>('/api/v1/plans/:key', { config: scope, schema: { tags, summary: 'Get a plan: the version in force now, and the list of its versions', response: { 200: obj, 404: err } } }, async (req) => planView(plan(req.params.key), Date.now()));
  app.get<{ Params: { key: string } }>('/api/v1/plans/:key/versions', { config: scope, schema: { tags, summary: "Every version of a plan, oldest first, with its definition", response: { 200: obj, 404: err } } }, async (req) => ({ items: versionsOf(plan(req.params.key)) }));
  app.get<{ Params: { key: string; n: string } }>('/api/v1/plans/:key/versions/:n', { config: scope, schema: { tags, summary: 'One version of a plan', response: { 200: obj, 404: err } } }, async (req) => {
    const v = planVersion(plan(req.params.key), Number(req.params.n));
    if (!v) throw new AppError('NOT_FOUND', `plan "${req.params.key}" has no version ${req.params.n}; its versions: GET /api/v1/plans/${req.params.key}/versions`);
    return v;
  });
  app.post<{ Params: { key: string } }>('/api/v1/plans/:key/versions', {
    config: scope,
    schema: {
      tags,
      summary: 'Publish a new version of a plan from a date',
      description:
        'The body is the whole new definition (name, currency, interval, baseFee, charges, minimumCommitment; the key is the path\'s) and effectiveFrom. ' +
        'Subscriptions (and plan changes) starting at or after effectiveFrom get the new version; existing subscriptions keep the version they are on until migrated (POST /api/v1/subscriptions/{id}/migrate). ' +
        'Currency and interval cannot change (a new plan can). expectedVersion (optional): refused with 409 if the latest version is another.',
      body: obj,
      response: { 201: obj, 400: err, 404: err, 409: err },
    },
  }, async (req, reply) => {
    const body = jsonBody(req);
    const meta = parseWith(VersionMeta, body);
    const input = planInput(body, req.params.key);
    checkMeters(deps, input);
    const cur = await b.plans.getFresh(req.params.key);
    if (!cur) throw new AppError('NOT_FOUND', `no plan "${req.params.key}"; create it with POST /api/v1/plans`);
    const latest = versionsOf(cur.value).at(-1)!.version;
    if (meta.expectedVersion !== undefined && meta.expectedVersion !== latest) throw new AppError('CATALOG_CONFLICT', `plan "${req.params.key}" is at version ${latest}, not ${meta.expectedVersion}: someone published a version meanwhile; reload it and retry`);
    const next = appendVersion(cur.value, input, meta.effectiveFrom, new Date().toISOString());
    if ('field' in next) throw new AppError('REQUEST_INVALID', `invalid body: body.${next.field}: ${next.reason}`, { details: { errors: [{ field: `body.${next.field}`, reason: next.reason }] } });
    await b.plans.update(req.params.key, next, cur.revision);
    await replicaCaughtUp(b.plans, req.params.key, (v) => v?.version === next.version);
    return reply.status(201).send(versionsOf(next).at(-1));
  });

  // ---- subscriptions ----
  app.post('/api/v1/subscriptions', { config: scope, schema: { tags, summary: 'Subscribe a customer to a plan (the plan version in force at the start)', body: obj, response: { 201: obj, 400: err } } }, async (req, reply) => {
    const input = parseWith(SubscriptionInputSchema, jsonBody(req));
    const customer = b.billing.customer(input.customer);
    const p = b.plans.get(input.plan);
    if (!p) throw new AppError('REQUEST_INVALID', `plan: no plan "${input.plan}"`);
    if (p.currency !== customer.currency) throw new AppError('REQUEST_INVALID', `plan: "${p.key}" is priced in ${p.currency} but the customer is billed in ${customer.currency}`);
    const sub: Subscription = {
      id: input.id ?? `sub_${randomUUID().replaceAll('-', '').slice(0, 20)}`,
      customer: input.customer,
      anchor: input.anchor ?? input.start,
      phases: [{ plan: input.plan, version: versionAt(p, Date.parse(input.start)).version, start: input.start, ...(input.end ? { end: input.end } : {}) }],
      ...(input.overrides ? { overrides: input.overrides } : {}),
      ...(input.discounts ? { discounts: input.discounts } : {}),
      createdAt: new Date().toISOString(),
    };
    await b.subscriptions.create(sub.id, sub);
    return reply.status(201).send(sub);
  });
  app.get<{ Querystring: Record<string, string> }>('/api/v1/subscriptions', {
    config: scope,
    schema: { tags, summary: 'List subscriptions, a page at a time', querystring: { type: 'object', properties: { customer: { type: 'string' }, plan: { type: 'string' }, ...pageQueryProperties(subscriptionListing as Listing<unknown>) } }, response: { 200: obj, 400: err } },
  }, async (req) => {
    const q = parseWith(z.object({ customer: z.string().optional(), plan: z.string().optional() }).passthrough(), req.query, 'query');
    const rows = b.subscriptions.list().filter((s) => (!q.customer || s.customer === q.customer) && (!q.plan || s.phases.some((p) => p.plan === q.plan)));
    return paginate(rows, subscriptionListing, parsePageQuery(subscriptionListing, req.query));
  });
  app.get<{ Params: { id: string } }>('/api/v1/subscriptions/:id', { config: scope, schema: { tags, summary: 'Get a subscription', response: { 200: obj, 404: err } } }, async (req) => {
    const s = b.subscriptions.get(req.params.id);
    if (!s) throw new AppError('NOT_FOUND', `no subscription "${req.params.id}"`);
    return s;
  });
  /** Reads the subscription fresh, applies `f`, writes it back on the revision read (409 if someone wrote meanwhile). */
  const mutate = async (id: string, f: (s: Subscription) => Subscription | { error: string }) => {
    const cur = await b.subscriptions.getFresh(id);
    if (!cur) throw new AppError('NOT_FOUND', `no subscription "${id}"`);
    const next = f(cur.value);
    if ('error' in next) throw new AppError('REQUEST_INVALID', next.error);
    await b.subscriptions.update(id, next, cur.revision);
    const written = JSON.stringify(next);
    await replicaCaughtUp(b.subscriptions, id, (v) => JSON.stringify(v) === written);
    return next;
  };
  app.post<{ Params: { id: string } }>('/api/v1/subscriptions/:id/change-plan', { config: scope, schema: { tags, summary: 'Change plan (upgrade or downgrade) at a time, to the version in force then; fixed fees are prorated to the second', body: obj, response: { 200: obj, 400: err, 404: err, 409: err } } }, async (req) => {
    const input = parseWith(PlanChangeSchema, jsonBody(req));
    const p = b.plans.get(input.plan);
    if (!p) throw new AppError('REQUEST_INVALID', `plan: no plan "${input.plan}"`);
    const at = Date.parse(input.effectiveAt);
    return mutate(req.params.id, (s) => {
      if (p.currency !== b.billing.customer(s.customer).currency) return { error: `plan: "${p.key}" is priced in ${p.currency}, not the customer's currency` };
      return changePlan(s, { plan: input.plan, version: versionAt(p, at).version }, at);
    });
  });
  app.post<{ Params: { id: string } }>('/api/v1/subscriptions/:id/migrate', {
    config: scope,
    schema: { tags, summary: "Move a subscription to another version of its plan from a time (a new phase, prorated as a plan change)", body: obj, response: { 200: obj, 400: err, 404: err, 409: err } },
  }, async (req) => {
    const input = parseWith(MigrateSchema, jsonBody(req));
    return mutate(req.params.id, (s) => {
      const key = s.phases.at(-1)!.plan;
      if (!planVersion(plan(key), input.version)) return { error: `version: plan "${key}" has no version ${input.version}; its versions: GET /api/v1/plans/${key}/versions` };
      return changePlan(s, { plan: key, version: input.version }, Date.parse(input.effectiveAt));
    });
  });
  app.post<{ Params: { id: string } }>('/api/v1/subscriptions/:id/cancel', { config: scope, schema: { tags, summary: 'Cancel at a time; an advance fee is credited for the unused part', body: obj, response: { 200: obj, 400: err, 404: err, 409: err } } }, async (req) => {
    const input = parseWith(CancelSchema, jsonBody(req));
    return mutate(req.params.id, (s) => changePlan(s, undefined, Date.parse(input.effectiveAt)));
  });
  app.post<{ Params: { id: string } }>('/api/v1/subscriptions/:id/terms', {
    config: scope,
    schema: { tags, summary: "Replace a subscription's overrides (negotiated prices, base fee, minimum) and discounts; they apply to every period not finalized yet", body: obj, response: { 200: obj, 400: err, 404: err, 409: err } },
  }, async (req) => {
    const input = parseWith(SubscriptionTermsSchema, jsonBody(req));
    return mutate(req.params.id, (s) => {
      const last = s.phases.at(-1)!;
      const charges = new Set(planVersion(plan(last.plan), last.version ?? 1)?.charges.map((c) => c.key) ?? []);
      for (const k of Object.keys(input.overrides?.charges ?? {})) if (!charges.has(k)) return { error: `invalid body: body.overrides.charges.${k}: plan "${last.plan}" (version ${last.version ?? 1}) has no charge "${k}"; its charges: ${[...charges].join(', ') || 'none'}` };
      for (const [i, d] of (input.discounts ?? []).entries()) if (d.charge && !charges.has(d.charge)) return { error: `invalid body: body.discounts.${i}.charge: plan "${last.plan}" (version ${last.version ?? 1}) has no charge "${d.charge}"` };
      const { overrides: _o, discounts: _d, ...rest } = s;
      return { ...rest, ...(input.overrides ? { overrides: input.overrides } : {}), ...(input.discounts?.length ? { discounts: input.discounts } : {}) };
    });
  });

  // ---- preview ----
  app.post('/api/v1/invoices/preview', {
    config: scope,
    schema: {
      tags,
      summary: "The current period's invoice (usage up to now) before and after a change that is not saved: a plan version, a migration, a plan change, a cancellation or new terms",
      description: 'Computed by the same code as the close and the projected invoice; nothing is stored. The draft is checked by the rules of saving it, so errors name the same fields. kind: plan-version | migrate | change-plan | cancel | terms.',
      body: obj,
      response: { 200: obj, 400: err, 404: err },
    },
  }, async (req) => {
    const draft = parseWith(PreviewDraftSchema, jsonBody(req));
    if (draft.kind === 'plan-version') checkMeters(deps, draft.plan, 'body.plan');
    return b.billing.preview(draft, Date.now());
  });
}
