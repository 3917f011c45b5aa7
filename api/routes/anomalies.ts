import { randomBytes, randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AppError } from '../../common/errors.ts';
import type { CatalogReplica } from '../../common/catalog.ts';
import { AnomalyKinds, AnomalyStatuses, DeliveryStatuses, type AlertDispatcher, type AnomalyScanner, type AnomalyStore, type Threshold, type Webhook } from '../../anomaly/index.ts';
import type { AppDeps } from '../app.ts';
import { jsonBody, parseWith } from '../http.ts';

export interface AnomalyRouteDeps {
  anomalies: AnomalyStore;
  scanner: AnomalyScanner;
  alerts: AlertDispatcher;
  webhooks: CatalogReplica<Webhook>;
  thresholds: CatalogReplica<Threshold>;
}

const obj = { type: 'object', additionalProperties: true } as const;
const tags = ['anomalies'];
const str = { type: 'string' } as const;
const int = { type: 'integer' } as const;
const nullableStr = { type: 'string', nullable: true } as const;

/** One attempt of the `alert_deliveries` log. */
const deliveryAttemptSchema = {
  type: 'object',
  properties: { anomalyId: str, event: str, attempt: int, ok: { type: 'boolean' }, httpStatus: int, error: str, at: str },
} as const;

/** One delivery (an alert event × a webhook) and where it stands. */
const deliveryStateSchema = {
  type: 'object',
  properties: {
    id: str,
    webhookId: str,
    anomalyId: str,
    event: { type: 'string', enum: ['anomaly.opened', 'anomaly.escalated', 'anomaly.resolved'] },
    status: { type: 'string', enum: [...DeliveryStatuses], description: 'pending: queued, not attempted yet; retrying: failed, next attempt at nextAttemptAt; delivered: a 2xx; failed: gave up (redeliver to try again)' },
    attempts: int,
    nextAttemptAt: nullableStr,
    lastStatus: { type: 'integer', description: 'HTTP status of the last attempt; 0 when there was no response' },
    lastError: str,
    createdAt: str,
    updatedAt: str,
    deliveredAt: nullableStr,
    redeliveries: int,
  },
} as const;

/** Anomalies (list, acknowledge, resolve), thresholds and alert webhooks. Reads: read scope; changes: admin. */
export function registerAnomalyRoutes(app: FastifyInstance, deps: AppDeps, a: AnomalyRouteDeps): void {
  const ListQuery = z.object({
    customer: z.string().optional(),
    meter: z.string().optional(),
    kind: z.enum(AnomalyKinds).optional(),
    status: z.enum(AnomalyStatuses).optional(),
    limit: z.coerce.number().int().min(1).max(1000).optional(),
  });
  app.get<{ Querystring: Record<string, string> }>('/api/v1/anomalies', {
    config: { scope: 'read' },
    schema: { tags, summary: 'List anomalies (newest first); filter by customer, meter, kind, status', querystring: { type: 'object', properties: { customer: { type: 'string' }, meter: { type: 'string' }, kind: { type: 'string', enum: [...AnomalyKinds] }, status: { type: 'string', enum: [...AnomalyStatuses] }, limit: { type: 'integer' } } }, response: { 200: obj } },
  }, async (req) => ({ items: await a.anomalies.list(parseWith(ListQuery, req.query, 'query')) }));
  app.get<{ Params: { id: string } }>('/api/v1/anomalies/:id', { config: { scope: 'read' }, schema: { tags, summary: 'One anomaly', response: { 200: obj, 404: { $ref: 'Error#' } } } }, async (req) => a.anomalies.get(req.params.id));
  app.post<{ Params: { id: string } }>('/api/v1/anomalies/:id/acknowledge', { config: { scope: 'admin' }, schema: { tags, summary: 'Acknowledge: someone is on it (it stays open to re-detection, without new alerts)', response: { 200: obj, 404: { $ref: 'Error#' } } } }, async (req) =>
    a.anomalies.acknowledge(req.params.id, req.apiKeyId ?? 'unknown'),
  );
  app.post<{ Params: { id: string } }>('/api/v1/anomalies/:id/resolve', { config: { scope: 'admin' }, schema: { tags, summary: 'Resolve with a note; a later detection opens a new anomaly', body: obj, response: { 200: obj, 404: { $ref: 'Error#' } } } }, async (req) => {
    const body = req.body ? jsonBody(req) : {};
    const { note } = parseWith(z.object({ note: z.string().max(2000).default('') }).strict(), body);
    return a.anomalies.resolve(req.params.id, req.apiKeyId ?? 'unknown', note);
  });
  app.post('/api/v1/anomalies/scan', { config: { scope: 'admin' }, schema: { tags, summary: 'Run an anomaly scan now (the scheduler runs one every few minutes)', response: { 200: obj } } }, async () => {
    const r = await a.scanner.scan(Date.now());
    if (!r.ran) throw new AppError('CATALOG_CONFLICT', 'another scan is running; retry in a minute');
    return r;
  });

  // ---- thresholds ----
  const ThresholdInput = z
    .object({
      customer: z.string().min(1),
      meter: z.string().min(1),
      cap: z.string().regex(/^\d+(\.\d+)?$/, 'cap must be a positive decimal string such as "10000"').refine((v) => Number(v) > 0, 'cap must be above 0'),
      percents: z.array(z.number().int().min(1).max(1000)).min(1).default([80, 100]),
    })
    .strict();
  app.post('/api/v1/thresholds', { config: { scope: 'admin' }, schema: { tags, summary: 'A usage cap on a meter per billing period, alerting at chosen percentages (default 80 and 100)', body: obj, response: { 201: obj, 400: { $ref: 'Error#' } } } }, async (req, reply) => {
    const input = parseWith(ThresholdInput, jsonBody(req));
    if (!deps.meters.get(input.meter)) throw new AppError('REQUEST_INVALID', `meter: no meter "${input.meter}"`);
    const t: Threshold = { id: `thr_${randomUUID().replaceAll('-', '').slice(0, 16)}`, ...input, percents: [...new Set(input.percents)].sort((x, y) => x - y), createdAt: new Date().toISOString() };
    await a.thresholds.create(t.id, t);
    return reply.status(201).send(t);
  });
  app.get<{ Querystring: { customer?: string } }>('/api/v1/thresholds', { config: { scope: 'read' }, schema: { tags, summary: 'List thresholds', querystring: { type: 'object', properties: { customer: { type: 'string' } } }, response: { 200: { type: 'array', items: obj } } } }, async (req) =>
    a.thresholds.list().filter((t) => !req.query.customer || t.customer === req.query.customer),
  );
  app.delete<{ Params: { id: string } }>('/api/v1/thresholds/:id', { config: { scope: 'admin' }, schema: { tags, summary: 'Delete a threshold' } }, async (req, reply) => {
    if (!a.thresholds.get(req.params.id)) throw new AppError('NOT_FOUND', `no threshold "${req.params.id}"`);
    await a.thresholds.delete(req.params.id);
    return reply.status(204).send();
  });

  // ---- webhooks ----
  const WebhookInput = z
    .object({
      url: z.string().url('url must be an http(s) URL').refine((u) => /^https?:\/\//.test(u), 'url must be http or https'),
      format: z.enum(['json', 'slack']).default('json'),
      kinds: z.array(z.enum(AnomalyKinds)).default([]),
    })
    .strict();
  const redact = (w: Webhook) => ({ ...w, secret: `${w.secret.slice(0, 6)}…` });
  app.post('/api/v1/webhooks', {
    config: { scope: 'admin' },
    schema: { tags, summary: 'Add an alert webhook: generic JSON signed with HMAC-SHA256 (Meterline-Signature: t=…,v1=…), or a Slack incoming webhook', body: obj, response: { 201: obj, 400: { $ref: 'Error#' } } },
  }, async (req, reply) => {
    const input = parseWith(WebhookInput, jsonBody(req));
    const w: Webhook = { id: `whk_${randomUUID().replaceAll('-', '').slice(0, 16)}`, ...input, secret: `whsec_${randomBytes(24).toString('base64url')}`, createdAt: new Date().toISOString() };
    await a.webhooks.create(w.id, w);
    // The signing secret is shown once.
    return reply.status(201).send(w);
  });
  app.get('/api/v1/webhooks', { config: { scope: 'admin' }, schema: { tags, summary: 'List webhooks (secrets redacted)', response: { 200: { type: 'array', items: obj } } } }, async () => a.webhooks.list().map(redact));
  app.delete<{ Params: { id: string } }>('/api/v1/webhooks/:id', { config: { scope: 'admin' }, schema: { tags, summary: 'Delete a webhook' } }, async (req, reply) => {
    if (!a.webhooks.get(req.params.id)) throw new AppError('NOT_FOUND', `no webhook "${req.params.id}"`);
    await a.webhooks.delete(req.params.id);
    return reply.status(204).send();
  });
  app.get<{ Params: { id: string } }>('/api/v1/webhooks/:id/deliveries', {
    config: { scope: 'admin' },
    schema: {
      tags,
      summary: 'The delivery log of a webhook (items: every attempt) and the state of each delivery (deliveries)',
      response: { 200: { type: 'object', properties: { items: { type: 'array', items: deliveryAttemptSchema }, deliveries: { type: 'array', items: deliveryStateSchema } } }, 404: { $ref: 'Error#' } },
    },
  }, async (req) => {
    if (!a.webhooks.get(req.params.id)) throw new AppError('NOT_FOUND', `no webhook "${req.params.id}"`);
    return { items: await a.alerts.deliveries(req.params.id), deliveries: await a.alerts.states({ webhookId: req.params.id }) };
  });

  // ---- deliveries ----
  const DeliveryQuery = z.object({ status: z.enum(DeliveryStatuses).optional(), webhook: z.string().optional(), limit: z.coerce.number().int().min(1).max(1000).optional() });
  app.get<{ Querystring: Record<string, string> }>('/api/v1/alert-deliveries', {
    config: { scope: 'admin' },
    schema: {
      tags,
      summary: 'Alert deliveries (one per alert event × webhook) by state, most recently changed first',
      querystring: { type: 'object', properties: { status: { type: 'string', enum: [...DeliveryStatuses] }, webhook: { type: 'string' }, limit: { type: 'integer' } } },
      response: { 200: { type: 'object', properties: { items: { type: 'array', items: deliveryStateSchema } } } },
    },
  }, async (req) => {
    const q = parseWith(DeliveryQuery, req.query, 'query');
    return { items: await a.alerts.states({ status: q.status, webhookId: q.webhook, limit: q.limit }) };
  });
  app.post<{ Params: { id: string } }>('/api/v1/alert-deliveries/:id/redeliver', {
    config: { scope: 'admin' },
    schema: { tags, summary: 'Queue a failed (or delivered) delivery again, from a first attempt, with the anomaly as it is now', response: { 200: deliveryStateSchema, 400: { $ref: 'Error#' }, 404: { $ref: 'Error#' } } },
  }, async (req) => a.alerts.redeliver(req.params.id, (id) => a.anomalies.get(id)));
}
