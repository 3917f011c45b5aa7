import { createHash } from 'node:crypto';
import { nanos } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { AppError } from '../common/errors.ts';
import { kvKeys } from '../common/nats.ts';
import type { AlertEvent } from './alerts.ts';
import type { Anomaly } from './store.ts';

export const DeliveryStatuses = ['pending', 'retrying', 'delivered', 'failed'] as const;
export type DeliveryStatus = (typeof DeliveryStatuses)[number];

/** One alert event × one webhook, as the API shows it. */
export interface DeliveryState {
  id: string;
  webhookId: string;
  anomalyId: string;
  event: AlertEvent;
  status: DeliveryStatus;
  /** HTTP attempts made (since the last manual redelivery). */
  attempts: number;
  /** When the next attempt is due (`retrying` only). */
  nextAttemptAt: string | null;
  /** HTTP status of the last attempt (0: no response). */
  lastStatus: number;
  lastError: string;
  createdAt: string;
  updatedAt: string;
  deliveredAt: string | null;
  /** Manual redeliveries of this delivery. */
  redeliveries: number;
}

/** What the queue holds: one message per delivery, the anomaly as it was when the event happened. */
export interface DeliveryMessage {
  id: string;
  webhookId: string;
  event: AlertEvent;
  anomaly: Anomaly;
  enqueuedAt: string;
  /** Which manual redelivery queued this message (0: the first enqueue); older messages are stale. */
  redeliveries?: number;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
/** Waits between attempts: 1 min, 5 min, 30 min, 2 h, 6 h, 6 h, 9 h; after the 8th attempt (~24 h) it has failed. */
export const DEFAULT_RETRY_DELAYS_MS: readonly number[] = [MINUTE, 5 * MINUTE, 30 * MINUTE, 2 * HOUR, 6 * HOUR, 6 * HOUR, 9 * HOUR];

const iso = (ms: number) => new Date(ms).toISOString();

/** When an event happened: an anomaly is opened or escalated at a detection, resolved at its resolution. */
function eventTime(event: AlertEvent, a: Anomaly): string {
  return event === 'anomaly.resolved' ? (a.resolvedAt ?? a.lastDetectedAt) : a.lastDetectedAt;
}

/**
 * The id of the delivery of `event` about `a` to one webhook: the same event (same anomaly, same
 * detection) to the same webhook is one delivery however often it is dispatched; a later
 * escalation of the same anomaly is another.
 */
export function deliveryId(event: AlertEvent, a: Anomaly, webhookId: string): string {
  return `dlv_${createHash('sha256').update(`${event}\u0000${a.id}\u0000${eventTime(event, a)}\u0000${webhookId}`).digest('hex').slice(0, 24)}`;
}

export function pendingState(m: Pick<DeliveryMessage, 'id' | 'webhookId' | 'event' | 'anomaly'>, nowMs: number, redeliveries = 0): DeliveryState {
  return { id: m.id, webhookId: m.webhookId, anomalyId: m.anomaly.id, event: m.event, status: 'pending', attempts: 0, nextAttemptAt: null, lastStatus: 0, lastError: '', createdAt: iso(nowMs), updatedAt: iso(nowMs), deliveredAt: null, redeliveries };
}

/**
 * The state after an attempt, and what to do with the queued message: `ack` after a 2xx, `nak`
 * with the next wait while attempts are left, else `term` (failed for good).
 */
export function afterAttempt(
  s: DeliveryState,
  outcome: { ok: boolean; httpStatus: number; error: string },
  nowMs: number,
  delaysMs: readonly number[] = DEFAULT_RETRY_DELAYS_MS,
): { state: DeliveryState; action: { type: 'ack' } | { type: 'nak'; delayMs: number } | { type: 'term' } } {
  const attempts = s.attempts + 1;
  const base = { ...s, attempts, lastStatus: outcome.httpStatus, lastError: outcome.error.slice(0, 500), updatedAt: iso(nowMs) };
  if (outcome.ok) return { state: { ...base, status: 'delivered', nextAttemptAt: null, deliveredAt: iso(nowMs) }, action: { type: 'ack' } };
  const delayMs = delaysMs[attempts - 1];
  if (delayMs === undefined) return { state: { ...base, status: 'failed', nextAttemptAt: null }, action: { type: 'term' } };
  return { state: { ...base, status: 'retrying', nextAttemptAt: iso(nowMs + delayMs) }, action: { type: 'nak', delayMs } };
}

export interface DeliveryQueueOptions {
  /** Stream of queued deliveries (work queue: a message leaves it when acknowledged or given up). */
  stream: string;
  /** Subject prefix of the stream; a delivery is published on `<subject>.<webhookId>`. Must not be under the events' prefix. */
  subject: string;
  /** KV bucket of delivery states (kept `stateTtlMs` after their last change). */
  bucket: string;
  replicas: number;
  /** Longest wait between retries must stay below this (the stream keeps messages this long). */
  maxAgeMs?: number;
  stateTtlMs?: number;
  /** How long one attempt may hold a message before JetStream gives it to another worker. */
  ackWaitMs?: number;
}

/** A queued message as the worker sees it (JetStream's JsMsg is one). */
export interface QueuedDelivery {
  seq: number;
  json<T>(): T;
  ack(): void;
  /** Comes back after `millis` (to whichever worker asks then). */
  nak(millis?: number): void;
  /** Leaves the queue for good. */
  term(reason?: string): void;
  /** Restarts the ack wait: this worker is still on it. */
  working(): void;
}

/** The messages one worker takes (JetStream's ConsumerMessages is one). */
export interface DeliveryFeed extends AsyncIterable<QueuedDelivery> {
  close(): Promise<void | Error>;
}

/** What the dispatcher needs of the queue (DeliveryQueue); unit tests hand in one in memory. */
export type DeliveryStore = Pick<DeliveryQueue, 'enqueue' | 'get' | 'put' | 'list' | 'redeliver' | 'consume'>;

/** The one durable consumer all workers share: JetStream gives each message to one of them at a time. */
export const DELIVERY_CONSUMER = 'alert-delivery';

/**
 * Queued webhook deliveries on JetStream (stream + one durable consumer) and their states in a
 * KV bucket keyed `<webhookId>.<deliveryId>`. Both survive a restart of any Meterline process.
 */
export class DeliveryQueue {
  private constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly kv: KV,
    readonly opts: DeliveryQueueOptions,
  ) {}

  /** Creates (or updates) the stream, its consumer and the state bucket. Idempotent: every role calls it at start. */
  static async open(js: JetStreamClient, jsm: JetStreamManager, opts: DeliveryQueueOptions): Promise<DeliveryQueue> {
    const cfg = {
      name: opts.stream,
      subjects: [`${opts.subject}.*`],
      storage: StorageType.File,
      retention: RetentionPolicy.Workqueue,
      max_age: nanos(opts.maxAgeMs ?? 3 * 24 * HOUR),
      duplicate_window: nanos(HOUR),
      num_replicas: opts.replicas,
    };
    try {
      await jsm.streams.info(opts.stream);
      await jsm.streams.update(opts.stream, cfg);
    } catch (err) {
      if (!/not found/i.test(String(err))) throw err;
      await jsm.streams.add(cfg);
    }
    const ackWait = nanos(opts.ackWaitMs ?? 2 * MINUTE);
    await jsm.consumers
      .add(opts.stream, { durable_name: DELIVERY_CONSUMER, ack_policy: AckPolicy.Explicit, ack_wait: ackWait, deliver_policy: DeliverPolicy.All, max_deliver: -1, max_ack_pending: 1_000 })
      .catch(async (err: unknown) => {
        if (!/already in use|exists/i.test(String(err))) throw err;
        await jsm.consumers.update(opts.stream, DELIVERY_CONSUMER, { ack_wait: ackWait });
      });
    const kv = await new Kvm(js).create(opts.bucket, { history: 1, ttl: opts.stateTtlMs ?? 30 * 24 * HOUR, replicas: opts.replicas });
    return new DeliveryQueue(js, jsm, kv, opts);
  }

  /**
   * Queues a delivery once. Order of effects: (1) a delivery with a state already is left alone
   * (idempotent beyond the stream's duplicate window); (2) the message is stored in the stream
   * with its id as the msg id (a second publish within the window is dropped); (3) the state is
   * created `pending`, unless a worker already wrote one. A crash between (2) and (3) loses only
   * the pending state: the worker writes the state at its first attempt.
   */
  async enqueue(m: DeliveryMessage, nowMs: number, redeliveries = 0): Promise<'queued' | 'exists'> {
    if (redeliveries === 0 && (await this.get(m.id, m.webhookId))) return 'exists';
    await this.js.publish(`${this.opts.subject}.${m.webhookId}`, JSON.stringify({ ...m, redeliveries }), { msgID: redeliveries === 0 ? m.id : `${m.id}.r${redeliveries}` });
    const state = pendingState(m, nowMs, redeliveries);
    if (redeliveries === 0) await this.kv.create(key(m.webhookId, m.id), JSON.stringify(state)).catch(() => undefined);
    else await this.kv.put(key(m.webhookId, m.id), JSON.stringify(state));
    return 'queued';
  }

  async get(id: string, webhookId?: string): Promise<DeliveryState | undefined> {
    const k = webhookId ? key(webhookId, id) : (await kvKeys(this.jsm, this.opts.bucket, `*.${id}`))[0];
    if (!k) return undefined;
    const e = await this.kv.get(k);
    return e && e.operation === 'PUT' ? (e.json<DeliveryState>()) : undefined;
  }

  async put(s: DeliveryState): Promise<void> {
    await this.kv.put(key(s.webhookId, s.id), JSON.stringify(s));
  }

  /** States, most recently changed first. */
  async list(filter: { webhookId?: string; status?: DeliveryStatus; limit?: number } = {}): Promise<DeliveryState[]> {
    const keys = await kvKeys(this.jsm, this.opts.bucket, filter.webhookId ? `${filter.webhookId}.*` : '>');
    const out: DeliveryState[] = [];
    for (const k of keys) {
      const e = await this.kv.get(k);
      if (!e || e.operation !== 'PUT') continue;
      const s = e.json<DeliveryState>();
      if (!filter.status || s.status === filter.status) out.push(s);
    }
    out.sort((a, b) => b.updatedAt.localeCompare(a.updatedAt) || a.id.localeCompare(b.id));
    return out.slice(0, filter.limit ?? 100);
  }

  /** Queues a failed (or delivered) delivery again, from a first attempt; its history stays in `alert_deliveries`. */
  async redeliver(id: string, anomaly: (id: string) => Promise<Anomaly>, nowMs: number): Promise<DeliveryState> {
    const s = await this.get(id);
    if (!s) throw new AppError('NOT_FOUND', `no delivery "${id}"`);
    if (s.status === 'pending' || s.status === 'retrying') throw new AppError('REQUEST_INVALID', `delivery ${id} is ${s.status}; it is still being attempted`);
    const a = await anomaly(s.anomalyId);
    await this.enqueue({ id: s.id, webhookId: s.webhookId, event: s.event, anomaly: a, enqueuedAt: iso(nowMs) }, nowMs, s.redeliveries + 1);
    return (await this.get(s.id, s.webhookId))!;
  }

  /** The shared consumer's messages, at most `max` held by this process at once. */
  async consume(max: number): Promise<DeliveryFeed> {
    const c = await this.js.consumers.get(this.opts.stream, DELIVERY_CONSUMER);
    return c.consume({ max_messages: max });
  }
}

const key = (webhookId: string, id: string) => `${webhookId}.${id}`;
