import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AppError } from '../../common/errors.ts';
import { MeterInputSchema, type Meter } from '../../processor/index.ts';
import type { ClickHouseClient, Store } from '../../common/clickhouse.ts';
import type { AppDeps } from '../app.ts';
import { isoTime, jsonBody, parseWith, stringList, timeZoneParam, unknownTimeZone } from '../http.ts';
import { queryUsage, type UsageResult } from '../usage.ts';
import { useStoreTimeZones, WindowSizes, type UsageQuery, type WindowSize } from '../usage-plan.ts';

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

/**
 * Limits of a usage query through the API. Embedded chDB runs a query off the JS thread
 * (/healthz and ingest stay responsive) but one query at a time: while a usage query runs, the
 * processor's writes and every other store call wait. So a query is refused before it runs
 * when its windows alone pass the limit, and ClickHouse stops it at the row or time limit (the
 * time limit is checked while reading; a large GROUP BY can run on past it while merging).
 * Tests lower them to reach them cheaply.
 */
export const USAGE_QUERY_LIMITS = { maxWindows: 100_000, maxResultRows: 100_000, maxExecutionSeconds: 10 };

export const USAGE_QUERY_LIMITS_TEXT =
  `Limits: with from given, at most ${USAGE_QUERY_LIMITS.maxWindows.toLocaleString('en-US')} windows (e.g. windowSize=MINUTE over about 69 days), else 400 USAGE_QUERY_TOO_LARGE before anything runs; ` +
  `at most ${USAGE_QUERY_LIMITS.maxResultRows.toLocaleString('en-US')} result rows (windows × groups), else 400 USAGE_QUERY_TOO_LARGE; ` +
  `at most ${USAGE_QUERY_LIMITS.maxExecutionSeconds} s of query time, else 503 USAGE_QUERY_TIMEOUT (retry after Retry-After, or narrow the query). ` +
  'Narrow a query with a shorter from/to, a larger windowSize, fewer groupBy keys or a subject filter.';

const WINDOW_MS: Record<WindowSize, number> = { MINUTE: 60_000, HOUR: 3_600_000, DAY: 86_400_000 };

/**
 * The store with every `ch.query` bounded by the limits, as a SETTINGS clause of the query: it
 * holds for that query only (chDB would keep `clickhouse_settings` in its one session, for every
 * later query of every component). Everything else is the store's own.
 */
function boundedStore(store: Store, limits: typeof USAGE_QUERY_LIMITS): Store {
  const settings =
    ` SETTINGS max_execution_time = ${limits.maxExecutionSeconds}, timeout_overflow_mode = 'throw',` +
    ` max_result_rows = ${limits.maxResultRows}, result_overflow_mode = 'throw'`;
  const ch = new Proxy(store.ch, {
    get(target, prop) {
      if (prop === 'query') return (params: Parameters<ClickHouseClient['query']>[0]) => target.query({ ...params, query: `${params.query}${settings}` });
      const v: unknown = Reflect.get(target, prop);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  return { ...store, ch };
}

const narrow = 'narrow the query: a shorter from/to range, a larger windowSize (HOUR or DAY), fewer groupBy keys, or a subject filter';

/**
 * A usage query from the API, bounded by USAGE_QUERY_LIMITS: too many windows is refused
 * before it runs (when `from` is given: without it the range starts at the first event), and
 * ClickHouse's row, time and time-zone errors become 4xx/503 errors that say what to change.
 * `tzParam` names the time-zone parameter in errors.
 */
export async function boundedQueryUsage(store: Store, meter: Meter, q: Omit<UsageQuery, 'meterId' | 'aggregation'>, fromGiven: boolean, tzParam: string): Promise<UsageResult> {
  const limits = { ...USAGE_QUERY_LIMITS };
  const { maxWindows, maxResultRows, maxExecutionSeconds } = limits;
  if (q.windowSize && fromGiven) {
    const windows = Math.ceil((q.toMs - q.fromMs) / WINDOW_MS[q.windowSize]);
    if (windows > maxWindows) {
      throw new AppError(
        'USAGE_QUERY_TOO_LARGE',
        `windowSize=${q.windowSize} from ${new Date(q.fromMs).toISOString()} to ${new Date(q.toMs).toISOString()} gives ${windows.toLocaleString('en-US')} windows, more than the limit of ${maxWindows.toLocaleString('en-US')}; ${narrow}`,
        { details: { limit: { windows: maxWindows }, windows } },
      );
    }
  }
  try {
    return await queryUsage(boundedStore(store, limits), meter, q, fromGiven);
  } catch (err) {
    const type = (err as { type?: unknown }).type;
    if (type === 'TOO_MANY_ROWS_OR_BYTES') {
      throw new AppError('USAGE_QUERY_TOO_LARGE', `the usage query gives more than ${maxResultRows.toLocaleString('en-US')} rows (windows × groups), the limit; ${narrow}`, { cause: err, details: { limit: { rows: maxResultRows } } });
    }
    if (type === 'TIMEOUT_EXCEEDED') {
      throw new AppError('USAGE_QUERY_TIMEOUT', `the usage query ran longer than the limit of ${maxExecutionSeconds} s; retry later or ${narrow}`, {
        cause: err,
        details: { limit: { seconds: maxExecutionSeconds }, retryAfterSeconds: 5 },
      });
    }
    if (/Cannot load time zone/i.test((err as Error).message ?? '')) {
      const field = `query.${tzParam}`;
      throw new AppError('REQUEST_INVALID', `invalid query: ${field}: ${unknownTimeZone(q.timeZone)}`, { cause: err, details: { errors: [{ field, reason: unknownTimeZone(q.timeZone) }] } });
    }
    throw err;
  }
}

/** Loads the time zones ClickHouse knows, once: a zone Node knows but ClickHouse does not is refused with a 400, never a 500. */
async function loadStoreTimeZones(store: Store, log: AppDeps['logger']): Promise<void> {
  try {
    const rs = await store.ch.query({ query: 'SELECT time_zone FROM system.time_zones', format: 'JSONEachRow' });
    useStoreTimeZones((await rs.json<{ time_zone: string }>()).map((r) => r.time_zone));
  } catch (err) {
    log.warn({ err }, "could not read ClickHouse's time zones; validating time zones with Node's list only");
  }
}

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

export function registerMeterRoutes(app: FastifyInstance, deps: AppDeps & { store: Store }): void {
  app.addHook('onReady', () => loadStoreTimeZones(deps.store, deps.logger));
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
  app.get('/api/v1/meters', { config: { scope: 'read' }, schema: { tags: ['meters'], summary: 'List meters', response: { 200: { type: 'array', items: meterJsonSchema } } } }, async () =>
    deps.meters.list().sort((a, b) => a.slug.localeCompare(b.slug)),
  );
  app.get<{ Params: { meter: string } }>(
    '/api/v1/meters/:meter',
    { config: { scope: 'read' }, schema: { tags: ['meters'], summary: 'Get a meter by slug or id', response: { 200: meterJsonSchema, 404: { $ref: 'Error#' } } } },
    async (req) => findMeter(deps, req.params.meter),
  );
  app.delete<{ Params: { meter: string } }>(
    '/api/v1/meters/:meter',
    { config: { scope: 'admin' }, schema: { tags: ['meters'], summary: 'Delete a meter (its stored values stay, under its id)', response: { 204: { type: 'null' }, 404: { $ref: 'Error#' } } } },
    async (req, reply) => {
      const meter = findMeter(deps, req.params.meter);
      await deps.meters.delete(meter.slug);
      return reply.status(204).send();
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
      return boundedQueryUsage(deps.store, meter, { fromMs, toMs, windowSize: q.windowSize, timeZone: q.windowTimeZone, subjects: q.subject, groupBy: q.groupBy, filterGroupBy }, q.from !== undefined, 'windowTimeZone');
    },
  );
}
