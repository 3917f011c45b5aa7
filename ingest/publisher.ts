import { createHash } from 'node:crypto';
import { headers as natsHeaders, millis } from '@nats-io/transport-node';
import type { JetStreamClient } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { elementTexts, scanJson } from '../common/json-text.ts';
import { partitionOfItem } from '../common/partition.ts';
import { AppError, errorMessage, isAppError } from '../common/errors.ts';
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
 * 409 INGEST_IDEMPOTENCY_CONFLICT: an Idempotency-Key reused for another body.
 * TODO: a plain `new AppError('INGEST_IDEMPOTENCY_CONFLICT', ...)` once common/errors.ts lists
 * the code (`INGEST_IDEMPOTENCY_CONFLICT: { httpStatus: 409, retryable: false }`).
 */
function idempotencyConflict(key: string): AppError {
  return new AppError('INGEST_IDEMPOTENCY_CONFLICT', `Idempotency-Key ${JSON.stringify(key)} was already used for a different body; a key may only be reused for the identical body (a retry). Send a new key for new events`);
}

/**
 * Which body each Idempotency-Key was first used for (a SHA-256 of it), in a NATS KV bucket whose
 * entries live as long as the event stream's duplicate window: within it, a key reused for another
 * body is refused instead of being stored as a duplicate of the first (JetStream would drop it).
 * The bucket is created on first use, with the window and replicas of the stream of `subject`.
 */
export class IdempotencyKeys {
  private kv: Promise<KV> | undefined;

  constructor(
    private readonly js: JetStreamClient,
    private readonly subject: string,
    private readonly bucket = 'meterline_idempotency',
  ) {}

  private open(): Promise<KV> {
    this.kv ??= (async () => {
      const jsm = await this.js.jetstreamManager();
      const { config } = await jsm.streams.info(await jsm.streams.find(this.subject));
      return new Kvm(this.js).create(this.bucket, { ttl: millis(config.duplicate_window ?? 120_000_000_000), history: 1, replicas: config.num_replicas });
    })().catch((err: unknown) => {
      this.kv = undefined;
      throw err;
    });
    return this.kv;
  }

  /** Records `key` for the body with hash `bodyHash`; false if it is recorded for another body. */
  async claim(key: string, bodyHash: string): Promise<boolean> {
    const kv = await this.open();
    const name = `idem.${createHash('sha256').update(key).digest('base64url')}`;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await kv.create(name, bodyHash);
        return true;
      } catch (err) {
        const entry = await kv.get(name);
        // Expired or deleted meanwhile: claim it again.
        if (!entry || entry.operation !== 'PUT') continue;
        if (entry.string() === bodyHash) return true;
        if (!/wrong last sequence/i.test(errorMessage(err))) throw err;
        return false;
      }
    }
    throw new Error(`Idempotency-Key record ${name} keeps changing`);
  }
}

/**
 * Stores event batches in JetStream. Each event goes to its partition's subject (a hash of
 * `(source, id)`, see common/partition.ts), so a batch becomes one message per partition it
 * touches (one message when there is one partition or every event hashes to the same one, in
 * which case the body is stored byte for byte). The message id is the producer's
 * Idempotency-Key with a hash of the body (or the hash alone) and the partition, so a retried
 * request within the stream's duplicate window is stored once; the same key with another body is
 * refused (409, see `IdempotencyKeys`), never dropped as a duplicate. Resolves only after
 * JetStream acknowledged every message (guarantee 1). Numbers in `data` keep every digit: events
 * are re-serialised with lossless-json when a batch is split.
 */
export class EventPublisher {
  private inflight = 0;
  private readonly keys: IdempotencyKeys;

  constructor(
    private readonly js: JetStreamClient,
    private readonly subjectOf: (partition: number) => string,
    private readonly opts: { partitions: number; timeoutMs: number; maxInflight: number; maxPayloadBytes: () => number; metrics: Metrics; idempotencyKeys?: IdempotencyKeys },
  ) {
    this.keys = opts.idempotencyKeys ?? new IdempotencyKeys(js, subjectOf(0));
  }

  static batchHash(body: string): string {
    return createHash('sha256').update(body).digest('base64url');
  }

  /** `batch` is `body` parsed (one item for a single event). */
  async publish(body: string, opts: { idempotencyKey?: string; receivedAtMs: number; batch: ParsedBatch }): Promise<PublishResult> {
    if (this.inflight >= this.opts.maxInflight) {
      throw new AppError('INGEST_OVERLOADED', 'too many batches in flight; retry after the delay in Retry-After', { details: { retryAfterSeconds: 1 } });
    }
    const hash = EventPublisher.batchHash(body);
    // The body's hash is part of the id: a different body under the same key is never a duplicate.
    const key = opts.idempotencyKey !== undefined ? `${opts.idempotencyKey}:${hash.slice(0, 16)}` : hash;
    const limit = this.opts.maxPayloadBytes() - 1024;
    const messages = partitionMessages(body, opts.batch, this.opts.partitions, limit).map(({ partition, part, data }) => ({
      subject: this.subjectOf(partition),
      msgID: `${this.opts.partitions > 1 ? `${key}@${partition}` : key}${part}`,
      data,
    }));
    this.inflight++;
    this.opts.metrics.ingestInflight.inc();
    const end = this.opts.metrics.ingestPublishSeconds.startTimer();
    try {
      if (opts.idempotencyKey !== undefined && !(await withTimeout(this.keys.claim(opts.idempotencyKey, hash), this.opts.timeoutMs))) throw idempotencyConflict(opts.idempotencyKey);
      const h = natsHeaders();
      h.set(RECEIVED_AT_HEADER, String(opts.receivedAtMs));
      const acks = await Promise.all(messages.map((m) => this.js.publish(m.subject, m.data, { msgID: m.msgID, headers: h, timeout: this.opts.timeoutMs })));
      return { seq: Math.max(...acks.map((a) => a.seq)), duplicate: acks.every((a) => a.duplicate) };
    } catch (err) {
      if (isAppError(err)) throw err;
      throw new AppError('INGEST_UNAVAILABLE', `the event log is unavailable (${errorMessage(err)}); retry after the delay in Retry-After (a retry with the same Idempotency-Key or body is stored once)`, {
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

/** `p`, or a rejection after `ms` (NATS KV calls wait out a reconnect; ingest answers 503 instead). */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** A parsed batch: its events and, on demand, each event's text as received. */
export interface ParsedBatch {
  items: unknown[];
  isArray: boolean;
  texts(): string[];
}

/** `body` as a batch, given what `JSON.parse(body)` returned; the texts are sliced from `body` when asked for. */
export function parsedBatch(body: string, parsed: unknown): ParsedBatch {
  const isArray = Array.isArray(parsed);
  return { items: isArray ? parsed : [parsed], isArray, texts: () => elementTexts(body, scanJson(body)) };
}

/**
 * The events of a batch by partition, in order, as their texts; `undefined` texts mean every
 * event is in that one partition, and the body is stored as received.
 */
export function groupByPartition(batch: ParsedBatch, partitions: number): Map<number, string[] | undefined> {
  const parts = batch.items.map((item) => partitionOfItem(item, partitions));
  const first = parts[0] ?? 0;
  if (parts.every((p) => p === first)) return new Map([[first, undefined]]);
  const texts = batch.texts();
  const groups = new Map<number, string[]>();
  parts.forEach((p, i) => {
    let g = groups.get(p);
    if (!g) groups.set(p, (g = []));
    g.push(texts[i]!);
  });
  return groups;
}

/**
 * A batch as the messages that store it: one per partition its events touch, split further to
 * fit `limitBytes`; `part` tells the pieces of one partition apart (`""` or `#i/n`). Each event's
 * text is kept byte for byte (common/json-text.ts), so every digit of its numbers survives.
 * Ingest and the processor's router both cut batches this way.
 */
export function partitionMessages(body: string, batch: ParsedBatch, partitions: number, limitBytes: number): { partition: number; part: string; data: string }[] {
  const out: { partition: number; part: string; data: string }[] = [];
  for (const [partition, texts] of groupByPartition(batch, partitions)) {
    const whole = Buffer.byteLength(body) <= limitBytes || !batch.isArray;
    const chunks = texts !== undefined ? splitArray(texts, limitBytes) : whole ? [body] : splitArray(batch.texts(), limitBytes);
    chunks.forEach((data, i) => out.push({ partition, part: chunks.length === 1 ? '' : `#${i}/${chunks.length}`, data }));
  }
  return out;
}

/** Packs event texts into JSON arrays whose text fits `limitBytes`. */
export function splitArray(texts: string[], limitBytes: number): string[] {
  const chunks: string[] = [];
  let current: string[] = [];
  let size = 2;
  for (const text of texts) {
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
