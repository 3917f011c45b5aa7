import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AppError } from '../../common/errors.ts';
import type { AppDeps } from '../app.ts';
import { isoTime, jsonBody, parseWith } from '../http.ts';
import { Scopes } from '../keys.ts';
import { MAINTENANCE_LEASE, type UsageStore } from '../../usage/index.ts';
import { findMeter } from './meters.ts';

const DAY = 86_400_000;

const KeyInput = z.object({
  name: z.string().min(1, 'name is required').max(200),
  scopes: z.array(z.enum(Scopes, { errorMap: () => ({ message: `each scope must be one of ${Scopes.join(', ')}` }) })).min(1, 'give at least one scope'),
}).strict();

/** API keys, dead letters, reconciliation and repair. */
export function registerAdminRoutes(app: FastifyInstance, deps: AppDeps & { usage: UsageStore }): void {
  const keySchema = { type: 'object', properties: { id: { type: 'string' }, name: { type: 'string' }, scopes: { type: 'array', items: { type: 'string' } }, prefix: { type: 'string' }, createdAt: { type: 'string' } } };

  app.post('/api/v1/api-keys', {
    config: { scope: 'admin' },
    schema: { tags: ['access'], summary: 'Create an API key (the key is shown once)', body: { type: 'object', properties: { name: { type: 'string' }, scopes: { type: 'array', items: { type: 'string', enum: [...Scopes] } } } }, response: { 201: { type: 'object', properties: { key: { type: 'string' }, record: keySchema } } } },
  }, async (req, reply) => {
    const input = parseWith(KeyInput, jsonBody(req));
    return reply.status(201).send(await deps.keys.create(input.name, input.scopes));
  });
  app.get('/api/v1/api-keys', { config: { scope: 'admin' }, schema: { tags: ['access'], summary: 'List API keys (never the keys themselves)', response: { 200: { type: 'array', items: keySchema } } } }, async () => deps.keys.list());
  app.delete<{ Params: { id: string } }>('/api/v1/api-keys/:id', { config: { scope: 'admin' }, schema: { tags: ['access'], summary: 'Revoke an API key' } }, async (req, reply) => {
    if (!(await deps.keys.revoke(req.params.id))) throw new AppError('NOT_FOUND', `no API key with id ${req.params.id}`);
    return reply.status(204).send();
  });

  const deadLetterSchema = {
    type: 'object',
    properties: { seq: { type: 'integer' }, reason: { type: 'string' }, stream: { type: 'string' }, streamSeq: { type: 'integer' }, index: { type: 'integer' }, receivedAtMs: { type: 'integer' }, deadLetteredAt: { type: 'string' }, event: { type: 'string' } },
  };
  app.get<{ Querystring: Record<string, string> }>('/api/v1/dead-letters', {
    config: { scope: 'read' },
    schema: {
      tags: ['dead letters'],
      summary: 'Events that were accepted but could not be counted, with the reason',
      querystring: { type: 'object', properties: { afterSeq: { type: 'integer' }, limit: { type: 'integer', maximum: 1000 } } },
      response: { 200: { type: 'object', properties: { total: { type: 'integer' }, nextAfterSeq: { type: 'integer' }, items: { type: 'array', items: deadLetterSchema } } } },
    },
  }, async (req) => {
    const q = parseWith(z.object({ afterSeq: z.coerce.number().int().min(0).optional(), limit: z.coerce.number().int().min(1).max(1000).optional() }), req.query, 'query');
    return deps.deadLetters.list(q);
  });
  app.post<{ Params: { seq: string } }>('/api/v1/dead-letters/:seq/redrive', {
    config: { scope: 'admin' },
    schema: { tags: ['dead letters'], summary: 'Send a dead letter back through processing (after fixing the meter or the cause)', response: { 202: { type: 'object', properties: { streamSeq: { type: 'integer' } } }, 404: { $ref: 'Error#' } } },
  }, async (req, reply) => {
    const { seq } = parseWith(z.object({ seq: z.coerce.number().int().min(1) }), req.params, 'params');
    return reply.status(202).send(await deps.deadLetters.redrive(seq));
  });

  app.get<{ Querystring: Record<string, string> }>('/api/v1/reconcile', {
    config: { scope: 'read' },
    schema: {
      tags: ['usage'],
      summary: 'Prove exactly-once per event for a range (whole UTC days): duplicates, missing and orphan values, missing dedup keys, rollups vs per-event values',
      querystring: { type: 'object', required: ['from', 'to'], properties: { from: { type: 'string', format: 'date-time' }, to: { type: 'string', format: 'date-time' }, subject: { type: 'string' }, meter: { type: 'string' } } },
    },
  }, async (req) => {
    const q = parseWith(z.object({ from: isoTime('from'), to: isoTime('to'), subject: z.string().optional(), meter: z.string().optional() }), req.query, 'query');
    const fromMs = Math.floor(q.from / DAY) * DAY;
    const toMs = Math.ceil(q.to / DAY) * DAY;
    if (fromMs >= toMs) throw new AppError('QUERY_INVALID', 'from must be before to');
    const meters = q.meter ? [findMeter(deps, q.meter)] : deps.meters.list();
    const lines = await deps.usage.reconcile(meters, { fromMs, toMs, subject: q.subject });
    return { from: new Date(fromMs).toISOString(), to: new Date(toMs).toISOString(), subject: q.subject ?? null, ok: lines.every((l) => l.ok), meters: lines };
  });

  const countSum = { type: 'object', properties: { count: { type: 'string' }, sum: { type: 'string' } } };
  const reconcileLine = {
    type: 'object',
    properties: {
      meter: { type: 'string' },
      rawEvents: { type: 'string' },
      values: countSum,
      rollups: { type: 'object', additionalProperties: countSum },
      uncounted: { type: 'string', description: 'distinct raw events of the type the meter does not count (informational)' },
      rawDuplicates: { type: 'string' },
      valueDuplicates: { type: 'string' },
      missingValues: { type: 'string' },
      orphanValues: { type: 'string' },
      missingKeys: { type: 'string' },
      ok: { type: 'boolean' },
    },
  };
  app.post('/api/v1/repair', {
    config: { scope: 'admin' },
    schema: {
      tags: ['usage'],
      summary: `Restore exactly-once for whole UTC days: remove duplicate raw events and values, insert missing values and dedup keys, rebuild the rollups' cells; holds the lease ${MAINTENANCE_LEASE} (the processor waits) and returns reconcile before and after`,
      body: { type: 'object', required: ['from', 'to'], properties: { from: { type: 'string', format: 'date-time' }, to: { type: 'string', format: 'date-time' }, meter: { type: 'string', description: 'one meter (slug or id); default every meter' } } },
      response: {
        200: {
          type: 'object',
          properties: {
            from: { type: 'string' },
            to: { type: 'string' },
            meters: { type: 'array', items: { type: 'string' } },
            ok: { type: 'boolean' },
            steps: { type: 'array', items: { type: 'object', properties: { step: { type: 'string' }, detail: { type: 'object', additionalProperties: true }, ms: { type: 'integer' } } } },
            before: { type: 'array', items: reconcileLine },
            after: { type: 'array', items: reconcileLine },
          },
        },
        503: { $ref: 'Error#' },
      },
    },
  }, async (req) => {
    const q = parseWith(z.object({ from: isoTime('from'), to: isoTime('to'), meter: z.string().optional() }).strict(), jsonBody(req));
    const fromMs = Math.floor(q.from / DAY) * DAY;
    const toMs = Math.ceil(q.to / DAY) * DAY;
    if (fromMs >= toMs) throw new AppError('QUERY_INVALID', 'from must be before to');
    const meters = q.meter ? [findMeter(deps, q.meter)] : deps.meters.list();
    return deps.usage.repair(meters, { fromMs, toMs });
  });
}
