import { STATUS_CODES } from 'node:http';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { AppError, isAppError } from '../common/errors.ts';
import { isPricingError } from '../rater/pricing/index.ts';
import type { Logger } from '../common/logger.ts';
import type { Metrics } from '../common/metrics.ts';
import type { CatalogReplica } from '../common/catalog.ts';
import type { EventPublisher, TimeLimits } from '../ingest/index.ts';
import type { Meter } from '../meter/index.ts';
import type { DeadLetters } from '../processor/index.ts';
import type { UsageStore } from '../usage/index.ts';
import { hasScope, type ApiKeyRecord, type ApiKeys, type Scope } from './keys.ts';
import { PORTAL_TOKEN_PREFIX, type PortalTokens } from './portal-tokens.ts';
import { registerIngestRoutes } from './routes/events.ts';
import { registerMeterRoutes } from './routes/meters.ts';
import { registerOpsRoutes } from './routes/ops.ts';
import { registerAdminRoutes } from './routes/admin.ts';
import { registerBillingRoutes, type BillingRouteDeps } from './routes/billing.ts';
import { registerAnomalyRoutes, type AnomalyRouteDeps } from './routes/anomalies.ts';
import { registerDashboardRoutes } from './routes/dashboard.ts';
import { registerPortalRoutes } from './routes/portal.ts';
import { registerUnbilledRoutes } from './routes/unbilled.ts';
import { registerRevenueRoutes } from './routes/revenue.ts';
import { registerUi } from './ui.ts';
import type { AccountsCacheOptions } from './accounts-cache.ts';
import type { BatchPricing } from './accounts.ts';

export interface AppDeps {
  logger: Logger;
  metrics: Metrics;
  /** Absent in the ingest-only role: then only ingest and ops routes are served. */
  usage?: UsageStore;
  meters: CatalogReplica<Meter>;
  keys: ApiKeys;
  publisher: EventPublisher;
  deadLetters: DeadLetters;
  ingest: { maxBodyBytes: number; maxBatchEvents: number; limits: TimeLimits };
  /** The rater's routes (customers, plans, subscriptions, invoices); absent in roles without it. */
  billing?: BillingRouteDeps;
  /** Anomalies, thresholds and alert webhooks; absent in roles without them. */
  anomalies?: AnomalyRouteDeps;
  /** Customer-portal tokens (bound to one customer); absent: every portal token is refused. */
  portalTokens?: PortalTokens;
  /** The accounts overview: how its cache refreshes (api/accounts-cache.ts; defaults otherwise), and the rater's stores to price many customers at once. */
  accounts?: { cache?: Partial<AccountsCacheOptions>; pricing?: BatchPricing };
  /** Serve the dashboard and portal under /ui/ (default true wherever the API is served). */
  ui?: boolean;
  /** Readiness: every dependency this process needs is reachable. */
  ready: () => Promise<Record<string, boolean>>;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Scope a route needs; routes without one are public (health, docs). */
    scope?: Scope;
    /** Any valid API key, whatever its scopes (e.g. "who am I"); portal tokens are refused. */
    anyKey?: boolean;
    /**
     * A customer-portal route: only a portal token opens it (API keys get 403), and the hook
     * sets `req.portalCustomer` to the token's customer. A `customer` or `subject` in the
     * path or query naming anyone else is refused with 403.
     */
    portal?: boolean;
  }
  interface FastifyRequest {
    apiKeyId?: string;
    apiKey?: ApiKeyRecord;
    /** Set on portal routes: the one customer the request may see. */
    portalCustomer?: string;
  }
}

/** Composes every component's routes into one Fastify app. Inject-testable; listens only when told. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    // Per-request logs are off (the hot ingest path); failures are logged at error level.
    loggerInstance: deps.logger.child({ component: 'api' }, { level: deps.logger.levelVal > 40 ? deps.logger.level : 'warn' }) as FastifyBaseLogger,
    bodyLimit: deps.ingest.maxBodyBytes,
    ajv: { customOptions: { coerceTypes: false } },
  });
  // Route schemas document the API (OpenAPI); zod validates in the handlers, with errors
  // that name each field.
  app.setValidatorCompiler(() => () => true);

  // Bodies arrive as text: ingest stores the exact bytes (numbers keep every digit).
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser(
    ['application/json', 'application/cloudevents+json', 'application/cloudevents-batch+json'],
    { parseAs: 'string' },
    (_req, body, done) => done(null, body),
  );

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'Meterline API', version: '0.1.0', description: 'Usage metering: CloudEvents ingest, meters, usage queries, reconciliation, dead letters.' },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'A Meterline API key (ml_...)' },
          portalToken: { type: 'http', scheme: 'bearer', description: 'A customer-portal token (mlp_...), bound to one customer; opens only /api/v1/portal/... routes' },
        },
      },
      security: [{ bearer: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  // Authentication and authorization, in one place, before any handler runs. Order: a route
  // without auth config is public; then the credential is found (missing: 401); a portal token
  // opens only portal routes and only its own customer (else 403); an API key opens only
  // non-portal routes with the scope they need (else 403).
  app.addHook('onRequest', async (req) => {
    const { scope, portal, anyKey } = req.routeOptions.config;
    if (!scope && !portal && !anyKey) return;
    const auth = req.headers.authorization;
    if (!auth) throw new AppError('AUTH_MISSING', 'missing API key: send "Authorization: Bearer <key>" (create one with `meterline keys create`)');
    const m = /^Bearer\s+(\S+)$/i.exec(auth);
    const token = m?.[1];
    if (token?.startsWith(PORTAL_TOKEN_PREFIX)) {
      const t = deps.portalTokens?.verify(token, Date.now());
      if (!t) throw new AppError('AUTH_INVALID', 'the portal token is not valid (revoked, expired or mistyped)');
      if (!portal) throw new AppError('AUTH_FORBIDDEN', 'a customer-portal token opens only the portal routes (/api/v1/portal/...)', { details: { needed: scope ?? 'api key', has: ['portal'] } });
      const params = (req.params ?? {}) as Record<string, unknown>;
      const query = (req.query ?? {}) as Record<string, unknown>;
      const named = [params.customer, query.customer, query.subject].flat().filter((v) => v !== undefined);
      if (named.some((c) => c !== t.customer)) throw new AppError('AUTH_FORBIDDEN', 'this portal token belongs to another customer', { details: { needed: 'portal token of that customer', has: ['portal'] } });
      req.portalCustomer = t.customer;
      return;
    }
    const record = token ? deps.keys.verify(token) : undefined;
    if (!record) throw new AppError('AUTH_INVALID', 'the API key is not valid (revoked or mistyped)');
    if (portal) throw new AppError('AUTH_FORBIDDEN', 'portal routes take a customer-portal token (mlp_...), not an API key; create one with POST /api/v1/portal-tokens', { details: { needed: 'portal', has: record.scopes } });
    if (scope && !hasScope(record, scope)) throw new AppError('AUTH_FORBIDDEN', `this API key lacks the "${scope}" scope this route needs`, { details: { needed: scope, has: record.scopes } });
    req.apiKeyId = record.id;
    req.apiKey = record;
  });

  app.addHook('onResponse', async (req, reply) => {
    deps.metrics.apiRequestSeconds.observe({ route: req.routeOptions.url ?? 'unknown', method: req.method, status: String(reply.statusCode) }, reply.elapsedTime / 1000);
  });

  app.setErrorHandler((err: FastifyError | AppError, req: FastifyRequest, reply) => {
    const e = toAppError(err);
    // Unexpected failures are errors; a store that is briefly away (503, retryable) is a warning.
    if (e.httpStatus >= 500) req.log[e.retryable ? 'warn' : 'error']({ err, reqId: req.id }, 'request failed');
    const retryAfter = e.details?.retryAfterSeconds;
    if (typeof retryAfter === 'number') void reply.header('retry-after', String(retryAfter));
    const { retryAfterSeconds: _r, ...details } = e.details ?? {};
    return sendError(reply, e.httpStatus, { code: e.code, message: e.code === 'INTERNAL' ? `internal error (request ${req.id}); see the server log` : e.message, ...details });
  });
  app.setNotFoundHandler((req, reply) => sendError(reply, 404, { code: 'NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}; see /docs` }));

  registerOpsRoutes(app, deps);
  registerIngestRoutes(app, deps);
  if (deps.usage) {
    const withUsage = { ...deps, usage: deps.usage };
    registerMeterRoutes(app, withUsage);
    registerAdminRoutes(app, withUsage);
    if (deps.billing) registerBillingRoutes(app, withUsage, deps.billing);
    if (deps.billing) registerUnbilledRoutes(app, withUsage, deps.billing);
    if (deps.billing) registerRevenueRoutes(app, deps.billing);
    if (deps.anomalies) registerAnomalyRoutes(app, withUsage, deps.anomalies);
    registerDashboardRoutes(app, withUsage);
    if (deps.billing) registerPortalRoutes(app, withUsage, deps.billing);
  }
  if (deps.ui ?? deps.usage !== undefined) registerUi(app);
  return app;
}

/**
 * Every error body: Meterline's `code` and `message` plus details (such as per-event `errors`),
 * as an RFC 9457 problem document (`type`, `title`, `status`, `detail`). OpenMeter's SDKs show
 * `detail` only when the Content-Type is exactly `application/problem+json`, so the body is sent
 * as bytes: Fastify appends a charset to a JSON string.
 */
function sendError(reply: FastifyReply, status: number, body: { code: string; message: string } & Record<string, unknown>) {
  const problem = { ...body, type: 'about:blank', title: STATUS_CODES[status] ?? 'Error', status, detail: body.message };
  return reply.status(status).type('application/problem+json').send(Buffer.from(JSON.stringify(problem)));
}

function toAppError(err: FastifyError | AppError): AppError {
  if (isAppError(err)) return err;
  if (isPricingError(err)) return new AppError('REQUEST_INVALID', `pricing: ${err.message}`, { cause: err });
  switch (err.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new AppError('INGEST_UNSUPPORTED_MEDIA_TYPE', 'unsupported Content-Type; send application/json, application/cloudevents+json or application/cloudevents-batch+json');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new AppError('INGEST_BODY_TOO_LARGE', 'request body is larger than INGEST_MAX_BODY_BYTES; split the batch');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new AppError('REQUEST_INVALID', 'request body is empty');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new AppError('REQUEST_INVALID', 'Content-Length does not match the body');
  }
  // ClickHouse or NATS unreachable: the client may retry; nothing was changed.
  const sysCode = (err as { code?: unknown }).code;
  if (typeof sysCode === 'string' && ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE'].includes(sysCode)) {
    return new AppError('STORE_UNAVAILABLE', 'a backing store is unreachable; retry after the delay in Retry-After', { cause: err, details: { retryAfterSeconds: 2 } });
  }
  if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) return new AppError('REQUEST_INVALID', err.message, { httpStatus: err.statusCode });
  return new AppError('INTERNAL', err.message, { cause: err });
}
