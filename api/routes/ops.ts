import type { FastifyInstance } from 'fastify';
import { zodToJsonSchema } from 'zod-to-json-schema';
import { CloudEventSchema } from '../../ingest/index.ts';
import type { AppDeps } from '../app.ts';

/** Health, readiness, Prometheus metrics and the OpenAPI document. */
export function registerOpsRoutes(app: FastifyInstance, deps: AppDeps): void {
  app.addSchema({
    $id: 'Error',
    type: 'object',
    description: 'Every error: a stable code (see docs/errors.md), a message saying what to do, and details such as per-event errors.',
    properties: {
      code: { type: 'string' },
      message: { type: 'string' },
      errors: { type: 'array', items: { type: 'object', additionalProperties: true } },
    },
    required: ['code', 'message'],
    additionalProperties: true,
  });
  const { $schema: _s, ...cloudEvent } = zodToJsonSchema(CloudEventSchema, { target: 'openApi3' }) as Record<string, unknown>;
  app.addSchema({ $id: 'CloudEvent', ...cloudEvent });

  app.get('/healthz', { schema: { tags: ['ops'], summary: 'Liveness: the process answers', security: [] } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { tags: ['ops'], summary: 'Readiness: NATS and ClickHouse reachable', security: [] } }, async (_req, reply) => {
    const checks = await deps.ready();
    const failing = Object.keys(checks).filter((k) => !checks[k]);
    if (failing.length === 0) return reply.status(200).send({ status: 'ready', checks });
    return reply.status(503).send({ status: 'not ready', reason: `not ready: ${failing.join(', ')} down`, checks });
  });
  app.get('/metrics', { config: { scope: 'read' }, schema: { tags: ['ops'], summary: 'Prometheus metrics' } }, async (_req, reply) =>
    reply.header('content-type', deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics()),
  );
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}
