import { createHash } from 'node:crypto';
import { headers as natsHeaders } from '@nats-io/transport-node';
import type { JetStreamClient } from '@nats-io/jetstream';
import { parse as losslessParse, stringify as losslessStringify } from 'lossless-json';
import { AppError, errorMessage } from '../common/errors.ts';
import type { Metrics } from '../common/metrics.ts';

/** Header carrying the ingest receipt time (epoch ms); the default for events without `time`. */
export const RECEIVED_AT_HEADER = 'Meterline-Received-At';

export interface PublishResult {
  /** Stream sequence of the (last) stored message. */
  seq: number;
  /** True when JetStream had already stored this batch (a producer retry). */
  duplicate: boolean;
}

/**
 * Stores event batches in JetStream, one message per batch. The message id is the producer's
 * Idempotency-Key (or a hash of the body), so a retried request within the stream's duplicate
 * window is stored once. Resolves only after JetStream acknowledged the store (guarantee 1).
 * The body is stored exactly as received, so numbers in `data` keep every digit.
 */
export class EventPublisher {
  private inflight = 0;

  constructor(
    private readonly js: JetStreamClient,
    private readonly subject: string,
    private readonly opts: { timeoutMs: number; maxInflight: number; maxPayloadBytes: () => number; metrics: Metrics },
  ) {}

  static batchHash(body: string): string {
    return createHash('sha256').update(body).digest('base64url');
  }

  async publish(body: string, opts: { idempotencyKey?: string; receivedAtMs: number; isArray: boolean }): Promise<PublishResult> {
    if (this.inflight >= this.opts.maxInflight) {
      throw new AppError('INGEST_OVERLOADED', 'too many batches in flight; retry after the delay in Retry-After', { details: { retryAfterSeconds: 1 } });
    }
    const key = opts.idempotencyKey ?? EventPublisher.batchHash(body);
    const limit = this.opts.maxPayloadBytes() - 1024;
    const chunks = Buffer.byteLength(body) <= limit || !opts.isArray ? [body] : splitArray(body, limit);
    this.inflight++;
    this.opts.metrics.ingestInflight.inc();
    const end = this.opts.metrics.ingestPublishSeconds.startTimer();
    try {
      let last: PublishResult = { seq: 0, duplicate: true };
      for (let i = 0; i < chunks.length; i++) {
        const h = natsHeaders();
        h.set(RECEIVED_AT_HEADER, String(opts.receivedAtMs));
        const ack = await this.js.publish(this.subject, chunks[i], {
          msgID: chunks.length === 1 ? key : `${key}#${i}/${chunks.length}`,
          headers: h,
          timeout: this.opts.timeoutMs,
        });
        last = { seq: ack.seq, duplicate: last.duplicate && ack.duplicate };
      }
      return last;
    } catch (err) {
      throw new AppError('INGEST_UNAVAILABLE', `the event log is unavailable (${errorMessage(err)}); nothing was stored, retry after the delay in Retry-After`, {
        cause: err,
        details: { retryAfterSeconds: 2 },
      });
    } finally {
      end();
      this.inflight--;
      this.opts.metrics.ingestInflight.dec();
    }
  }
}

/** Splits a JSON array into arrays whose text fits `limitBytes`, keeping every number's digits. */
function splitArray(body: string, limitBytes: number): string[] {
  const items = losslessParse(body) as unknown[];
  const chunks: string[] = [];
  let current: string[] = [];
  let size = 2;
  for (const item of items) {
    const text = losslessStringify(item) ?? 'null';
    const n = Buffer.byteLength(text) + 1;
    if (current.length > 0 && size + n > limitBytes) {
      chunks.push(`[${current.join(',')}]`);
      current = [];
      size = 2;
    }
    current.push(text);
    size += n;
  }
  if (current.length > 0) chunks.push(`[${current.join(',')}]`);
  return chunks;
}
