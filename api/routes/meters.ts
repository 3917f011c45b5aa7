import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AppError } from '../../common/errors.ts';
import { MeterInputSchema, type Meter } from '../../meter/index.ts';
import { chargesOfMeter } from '../../rater/index.ts';
import type { AppDeps } from '../app.ts';
import { paginate, pageQueryProperties, parsePageQuery, type Listing } from '../pagination.ts';
import { replicaCaughtUp } from './catalog.ts';
import { isoTime, jsonBody, parseWith, stringList, timeZoneParam } from '../http.ts';
import { USAGE_QUERY_LIMITS_TEXT, WindowSizes, type UsageStore } from '../../usage/index.ts';

export function findMeter(deps: Pick<AppDeps, 'meters'>, idOrSlug: string): Meter {
  const meter = deps.meters.get(idOrSlug) ?? deps.meters.list().find((m) => m.id === idOrSlug);
  if (!meter) throw new AppError('METER_NOT_FOUND', `no meter "${idOrSlug}"; list meters with GET /api/v1/meters`);
  return meter;
}

const UsageQuerySchema = z
  .object({
    from: isoTime('from').optional(),
    to: isoTime('to').optional(),
    windowSize: z.enum(WindowSizes, { errorMap: () => ({ message: `windowSize must be one of ${WindowSizes.join(', ')}` }) }).optional(),
    windowTimeZone: timeZoneParam().default('UTC'),
    subject: stringList,
    groupBy: stringList,
  })
  .passthrough();

const meterJsonSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    slug: { type: 'string' },
    name: { type: 'string' },
    description: { type: 'string' },
    eventType: { type: 'string' },
    aggregation: { type: 'string', enum: ['SUM', 'COUNT', 'UNIQUE_COUNT', 'MIN', 'MAX', 'AVG', 'LATEST'] },
    valueProperty: { type: 'string', description: 'JSON path into data, e.g. $.tokens' },
    groupBy: { type: 'object', additionalProperties: { type: 'string' } },
    filter: { type: 'object', additionalProperties: true },
    createdAt: { type: 'string', format: 'date-time' },
  },
  additionalProperties: true,
};

const meterListing: Listing<Meter> = {
  sort: { slug: (m) => m.slug, name: (m) => m.name ?? m.slug, createdAt: (m) => m.createdAt },
  defaultSort: 'slug',
  search: (m) => [m.slug, m.name, m.description, m.eventType],
};

/** PATCH body: any meter field, so a client may send the meter back whole; only name and description may differ. */
const MeterEditSchema = z
  .object({
    name: z.string().max(200, 'must be at most 200 characters').optional(),
    description: z.string().max(2000, 'must be at most 2000 characters').optional(),
  })
  .passthrough();

/** The fields that define what a meter's stored usage means. */
const DEFINITION_FIELDS = ['slug', 'eventType', 'aggregation', 'valueProperty', 'groupBy', 'filter'] as const;

/** A changed definition field is refused, naming it: the usage already stored was measured by the old definition. */
function refuseDefinitionChange(meter: Meter, body: Record<string, unknown>): void {
  const changed = DEFINITION_FIELDS.filter((f) => f in body && JSON.stringify(body[f]) !== JSON.stringify(meter[f]));
  if (changed.length === 0) return;
  const errors = changed.map((f) => ({
    field: `body.${f}`,
    reason: `cannot change once the meter exists: usage stored and invoices billed were measured with ${JSON.stringify(meter[f] ?? null)}, and changing it would silently re-define them; create a new meter with the new definition and point the plans' charges at it in a new plan version`,
  }));
  throw new AppError('REQUEST_INVALID', `invalid body: ${errors.map((e) => `${e.field}: ${e.reason}`).join('; ')}`, { details: { errors } });
}

/**
 * Refuses to delete a meter that a plan still charges for (any version: a subscription pinned
 * to an old version still bills it), naming them: every close would fail on the missing meter.
 */
function refuseIfCharged(deps: AppDeps, meter: Meter): void {
  const charges = (deps.billing?.plans.list() ?? []).flatMap((p) => chargesOfMeter(p, meter.slug));
  if (charges.length === 0) return;
  const plans = [...new Set(charges.map((c) => c.split(' ')[0]!))];
  throw new AppError(
    'REQUEST_INVALID',
    `meter "${meter.slug}" is charged for by plan${plans.length > 1 ? 's' : ''} ${plans.map((p) => `"${p}"`).join(', ')} (${charges.join(', ')}): subscriptions on those versions, and corrections of periods they billed, read it. ` +
      'To stop billing it, publish a plan version without the charge and migrate the subscriptions; the meter itself stays (rename it with PATCH if it is retired)',
    { httpStatus: 409, details: { plans, charges } },
  );
}

export function registerMeterRoutes(app: FastifyInstance, deps: AppDeps & { usage: UsageStore }): void {
  // A zone Node knows but ClickHouse does not is refused with a 400, never a 500.
  app.addHook('onReady', async () => {
    await deps.usage.loadTimeZones().catch((err: unknown) => deps.logger.warn({ err }, "could not read ClickHouse's time zones; validating time zones with Node's list only"));
  });
  app.post(
    '/api/v1/meters',
    { config: { scope: 'admin' }, schema: { tags: ['meters'], summary: 'Create a meter (backfilled from stored events)', body: meterJsonSchema, response: { 201: meterJsonSchema, 400: { $ref: 'Error#' }, 409: { $ref: 'Error#' } } } },
    async (req, reply) => {
      const input = parseWith(MeterInputSchema, jsonBody(req));
      const meter: Meter = { ...input, id: randomUUID(), createdAt: new Date().toISOString() };
      try {
        await deps.meters.create(input.slug, meter);
      } catch (err) {
        if (err instanceof AppError && err.code === 'CATALOG_CONFLICT') throw new AppError('METER_EXISTS', `a meter "${input.slug}" already exists; delete it first or pick another slug`);
        throw err;
      }
      return reply.status(201).send(meter);
    },
  );
  app.get<{ Querystring: Record<string, string> }>(
    '/api/v1/meters',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['meters'],
        summary: 'List meters: a plain array (as OpenMeter clients expect), every meter unless page or pageSize is given; X-Total-Count counts the matches',
        querystring: { type: 'object', properties: pageQueryProperties(meterListing as Listing<unknown>) },
        response: { 200: { type: 'array', items: meterJsonSchema }, 400: { $ref: 'Error#' } },
      },
    },
    async (req, reply) => {
      const q = parsePageQuery(meterListing, req.query);
      // Without page or pageSize: every meter, as before pagination (clients that know no paging keep seeing all).
      const paged = req.query.page === undefined && req.query.pageSize === undefined ? { ...q, pageSize: Number.MAX_SAFE_INTEGER } : q;
      const page = paginate(deps.meters.list(), meterListing, paged);
      void reply.header('x-total-count', String(page.totalCount));
      return page.items;
    },
  );
  app.get<{ Params: { meter: string } }>(
    '/api/v1/meters/:meter',
    { config: { scope: 'read' }, schema: { tags: ['meters'], summary: 'Get a meter by slug or id', response: { 200: meterJsonSchema, 404: { $ref: 'Error#' } } } },
    async (req) => findMeter(deps, req.params.meter),
  );
  app.delete<{ Params: { meter: string } }>(
    '/api/v1/meters/:meter',
    { config: { scope: 'admin' }, schema: { tags: ['meters'], summary: 'Delete a meter (its stored values stay, under its id); refused (409) while any version of a plan charges for it', response: { 204: { type: 'null' }, 404: { $ref: 'Error#' }, 409: { $ref: 'Error#' } } } },
    async (req, reply) => {
      const meter = findMeter(deps, req.params.meter);
      refuseIfCharged(deps, meter);
      await deps.meters.delete(meter.slug);
      return reply.status(204).send();
    },
  );

  app.patch<{ Params: { meter: string } }>(
    '/api/v1/meters/:meter',
    {
      config: { scope: 'admin' },
      schema: {
        tags: ['meters'],
        summary: "Edit a meter's name and description",
        description: 'Only name and description change. slug, eventType, aggregation, valueProperty, groupBy and filter define what the stored usage means; changing them would re-price every period already billed, so they are refused (send them unchanged, or leave them out): create a new meter and point the charges at it in a new plan version.',
        body: { type: 'object', additionalProperties: true },
        response: { 200: meterJsonSchema, 400: { $ref: 'Error#' }, 404: { $ref: 'Error#' }, 409: { $ref: 'Error#' } },
      },
    },
    async (req) => {
      const meter = findMeter(deps, req.params.meter);
      const body = parseWith(MeterEditSchema, jsonBody(req));
      refuseDefinitionChange(meter, body);
      const cur = await deps.meters.getFresh(meter.slug);
      if (!cur) throw new AppError('METER_NOT_FOUND', `no meter "${meter.slug}"`);
      const next: Meter = { ...cur.value, ...(body.name !== undefined ? { name: body.name } : {}), ...(body.description !== undefined ? { description: body.description } : {}) };
      await deps.meters.update(meter.slug, next, cur.revision);
      await replicaCaughtUp(deps.meters, meter.slug, (v) => v?.name === next.name && v?.description === next.description);
      return next;
    },
  );

  app.get<{ Params: { meter: string }; Querystring: Record<string, string | string[]> }>(
    '/api/v1/meters/:meter/query',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['usage'],
        summary: 'Query usage of a meter (OpenMeter-compatible)',
        description:
          'Windows are half-open [from, to). Values are exact decimal strings. Served from the minute/hour/day rollups when the range and windows align to them, else from per-event values. ' +
          'filterGroupBy[key]=value filters on a group-by value (repeat for several values). ' +
          'windowTimeZone is an IANA name (any case; answered in its canonical spelling), else 400. ' +
          USAGE_QUERY_LIMITS_TEXT,
        querystring: {
          type: 'object',
          properties: {
            from: { type: 'string', format: 'date-time' },
            to: { type: 'string', format: 'date-time', description: 'Exclusive. Default: now, rounded up to the minute.' },
            windowSize: { type: 'string', enum: [...WindowSizes] },
            windowTimeZone: { type: 'string', default: 'UTC', description: 'IANA time zone of the windows, in any case (america/new_york is America/New_York); unknown to Node or ClickHouse: 400' },
            subject: { type: 'array', items: { type: 'string' } },
            groupBy: { type: 'array', items: { type: 'string' } },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              from: { type: 'string' },
              to: { type: 'string' },
              windowSize: { type: 'string' },
              source: { type: 'string' },
              data: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    value: { type: 'string' },
                    windowStart: { type: 'string' },
                    windowEnd: { type: 'string' },
                    subject: { type: 'string', nullable: true },
                    groupBy: { type: 'object', additionalProperties: { type: 'string' } },
                  },
                },
              },
            },
          },
          400: { $ref: 'Error#' },
          404: { $ref: 'Error#' },
          503: { $ref: 'Error#' },
        },
      },
    },
    async (req) => {
      const meter = findMeter(deps, req.params.meter);
      const q = parseWith(UsageQuerySchema, req.query, 'query');
      const keys = Object.keys(meter.groupBy ?? {});
      for (const g of q.groupBy) {
        if (g !== 'subject' && !keys.includes(g)) {
          throw new AppError('QUERY_INVALID', `groupBy "${g}" is not a dimension of meter "${meter.slug}"; it has: ${['subject', ...keys].join(', ')}`);
        }
      }
      const filterGroupBy: Record<string, string[]> = {};
      for (const [k, v] of Object.entries(req.query)) {
        const m = /^filterGroupBy\[(.+)\]$/.exec(k);
        if (!m) continue;
        if (!keys.includes(m[1]!)) throw new AppError('QUERY_INVALID', `filterGroupBy[${m[1]}]: "${m[1]}" is not a dimension of meter "${meter.slug}"`);
        filterGroupBy[m[1]!] = Array.isArray(v) ? v : [v];
      }
      const toMs = q.to ?? Math.ceil(Date.now() / 60_000) * 60_000;
      const fromMs = q.from ?? 0;
      if (fromMs >= toMs) throw new AppError('QUERY_INVALID', 'from must be before to');
      return deps.usage.query(meter, { fromMs, toMs, windowSize: q.windowSize, timeZone: q.windowTimeZone, subjects: q.subject, groupBy: q.groupBy, filterGroupBy }, { fromGiven: q.from !== undefined, bounded: { tzParam: 'windowTimeZone' } });
    },
  );
}
