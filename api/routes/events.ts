import type { FastifyInstance } from 'fastify';
import { AppError } from '../../common/errors.ts';
import { decodeUtf8Strict, Utf8Error } from '../../common/json-text.ts';
import { checkBatch, invalidUtf8Event, MAX_DATA_DEPTH, parsedBatch, type EventError } from '../../ingest/index.ts';
import type { AppDeps } from '../app.ts';

const MAX_LISTED_ERRORS = 100;
const CONTENT_TYPES = ['application/json', 'application/cloudevents+json', 'application/cloudevents-batch+json'];

/** The 400 for a batch with invalid events: the message names the first problems (SDKs often show only the message). */
function invalidEvents(errors: EventError[], count: number): AppError {
  const bad = new Set(errors.map((e) => e.index)).size;
  const first = errors.slice(0, 3).map((e) => `event ${e.index}${e.id !== undefined ? ` (id ${JSON.stringify(e.id.slice(0, 64))})` : ''}: ${e.field ? `${e.field}: ` : ''}${e.reason}`);
  const more = errors.length > first.length ? `; and ${errors.length - first.length} more (see errors)` : '';
  return new AppError('INGEST_INVALID_EVENTS', `${bad} of ${count} events are invalid; nothing was stored. Fix them and send the batch again: ${first.join('; ')}${more}`, {
    details: { errors: errors.slice(0, MAX_LISTED_ERRORS), ...(errors.length > MAX_LISTED_ERRORS ? { moreErrors: errors.length - MAX_LISTED_ERRORS } : {}) },
  });
}

/**
 * POST /api/v1/events: CloudEvents in, compatible with OpenMeter's event API and SDKs.
 * A batch is all or nothing: if any event is invalid, none is stored and the 400 names every
 * bad event (index, id, field, reason), so the producer fixes and resends the same batch.
 * 202 only after JetStream stored the batch.
 */
export function registerIngestRoutes(app: FastifyInstance, deps: AppDeps): void {
  // In its own scope: this route reads the body as bytes and decodes it strictly (the app's
  // parser decodes with U+FFFD for bad bytes, which would make ids a\xff and a\xfe one id).
  void app.register(async (scope) => ingestRoute(scope, deps));
}

function ingestRoute(app: FastifyInstance, deps: AppDeps): void {
  const { metrics } = deps;
  app.removeContentTypeParser(CONTENT_TYPES);
  app.addContentTypeParser(CONTENT_TYPES, { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.post(
    '/api/v1/events',
    {
      config: { scope: 'ingest' },
      schema: {
        tags: ['events'],
        summary: 'Ingest usage events (CloudEvents 1.0)',
        description:
          'Content types: application/cloudevents+json (one event), application/cloudevents-batch+json (array), application/json (one or an array). ' +
          'Optional Idempotency-Key header: a retried request with the same key and the identical body is stored once (202 with duplicate: true). ' +
          'Reusing a key for a different body within the stream duplicate window (STREAM_DUPLICATE_WINDOW) is refused with 409 INGEST_IDEMPOTENCY_CONFLICT and nothing of it is stored: use a new key for new events. ' +
          'A batch with any invalid event is rejected whole (400 INGEST_INVALID_EVENTS naming each event by index and id, and the field). ' +
          'Refused as well, because the store cannot hold them: a body that is not UTF-8, strings or keys with a lone UTF-16 surrogate (e.g. "\\ud83d" alone), ' +
          `numbers that are not finite as a double (e.g. 1e400), and data nested more than ${MAX_DATA_DEPTH} levels deep.`,
        headers: { type: 'object', properties: { 'idempotency-key': { type: 'string', maxLength: 200 } } },
        body: {
          oneOf: [
            { $ref: 'CloudEvent#' },
            { type: 'array', items: { $ref: 'CloudEvent#' } },
          ],
        },
        response: {
          202: { type: 'object', properties: { accepted: { type: 'integer' }, duplicate: { type: 'boolean', description: 'true if this batch had already been stored' } } },
          400: { $ref: 'Error#' },
          409: { $ref: 'Error#' },
          413: { $ref: 'Error#' },
          415: { $ref: 'Error#' },
          429: { $ref: 'Error#' },
          503: { $ref: 'Error#' },
        },
      },
    },
    async (req, reply) => {
      const receivedAtMs = Date.now();
      try {
        const bytes = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
        let text: string;
        try {
          text = decodeUtf8Strict(bytes);
        } catch (err) {
          if (!(err instanceof Utf8Error)) throw err;
          const bad = invalidUtf8Event(bytes, err);
          if (!bad) throw new AppError('INGEST_MALFORMED_JSON', `request body is ${err.message}`);
          metrics.ingestEventsRejected.inc({ reason: 'invalid' }, bad.count);
          throw invalidEvents([bad.error], bad.count);
        }
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch (err) {
          throw new AppError('INGEST_MALFORMED_JSON', `request body is not valid JSON: ${(err as Error).message}`);
        }
        const ct = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
        const isArray = Array.isArray(parsed);
        if (ct === 'application/cloudevents+json' && isArray) {
          throw new AppError('REQUEST_INVALID', 'application/cloudevents+json carries one event; send an array as application/cloudevents-batch+json');
        }
        if (ct === 'application/cloudevents-batch+json' && !isArray) {
          throw new AppError('REQUEST_INVALID', 'application/cloudevents-batch+json must be a JSON array of events');
        }
        const items = isArray ? (parsed as unknown[]) : [parsed];
        if (items.length === 0) throw new AppError('REQUEST_INVALID', 'the batch is empty; send at least one event');
        if (items.length > deps.ingest.maxBatchEvents) {
          throw new AppError('INGEST_BATCH_TOO_LONG', `the batch has ${items.length} events; at most ${deps.ingest.maxBatchEvents} per request (INGEST_MAX_BATCH_EVENTS)`);
        }
        const { errors } = checkBatch(items, receivedAtMs, deps.ingest.limits);
        if (errors.length > 0) {
          metrics.ingestEventsRejected.inc({ reason: 'invalid' }, items.length);
          throw invalidEvents(errors, items.length);
        }
        const idem = req.headers['idempotency-key'];
        const idempotencyKey = typeof idem === 'string' && idem.length > 0 ? idem : undefined;
        if (idempotencyKey && (idempotencyKey.length > 200 || !/^[\x21-\x7e]+$/.test(idempotencyKey))) {
          throw new AppError('REQUEST_INVALID', 'Idempotency-Key must be 1-200 printable ASCII characters without spaces');
        }
        // A batch spanning partitions is cut into per-partition messages of the events' texts as received.
        const res = await deps.publisher.publish(text, { idempotencyKey, receivedAtMs, batch: parsedBatch(text, parsed) });
        if (!res.duplicate) metrics.ingestEventsAccepted.inc(items.length);
        metrics.ingestRequests.inc({ status: '202' });
        return reply.status(202).send({ accepted: items.length, duplicate: res.duplicate });
      } catch (err) {
        metrics.ingestRequests.inc({ status: String(err instanceof AppError ? err.httpStatus : 500) });
        throw err;
      }
    },
  );
}
