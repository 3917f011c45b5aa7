import { createHmac } from 'node:crypto';
import { Counter } from 'prom-client';
import type { Metrics } from '../common/metrics.ts';
import type { NatsConnection } from '@nats-io/transport-node';
import type { CatalogReplica } from '../common/catalog.ts';
import type { Store } from '../common/clickhouse.ts';
import { errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import { afterAttempt, DEFAULT_RETRY_DELAYS_MS, deliveryId, pendingState, type DeliveryFeed, type DeliveryMessage, type DeliveryState, type DeliveryStatus, type DeliveryStore, type QueuedDelivery } from './delivery.ts';
import type { Anomaly } from './store.ts';

/** Where alerts go: a generic JSON webhook signed with HMAC-SHA256, or a Slack incoming webhook. */
export interface Webhook {
  id: string;
  url: string;
  format: 'json' | 'slack';
  /** HMAC key for `json` webhooks; shown once at creation. */
  secret: string;
  /** Only these kinds (all when empty). */
  kinds: string[];
  createdAt: string;
}

export const SIGNATURE_HEADER = 'Meterline-Signature';

/**
 * The signature header of a generic webhook: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
 * (Stripe's scheme: the timestamp is signed too, so a receiver can refuse replays).
 */
export function signPayload(secret: string, body: string, unixSeconds: number): string {
  const mac = createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}

export type AlertEvent = 'anomaly.opened' | 'anomaly.escalated' | 'anomaly.resolved';

export function alertBody(webhook: Pick<Webhook, 'format'>, event: AlertEvent, a: Anomaly): string {
  if (webhook.format === 'slack') {
    if (event === 'anomaly.resolved') {
      const text = `:white_check_mark: resolved: ${a.kind.replace('_', ' ')} for ${a.customer}${a.meter ? ` (${a.meter})` : ''}${a.resolutionNote ? `: ${a.resolutionNote}` : ''}`;
      return JSON.stringify({ text, blocks: [{ type: 'section', text: { type: 'mrkdwn', text } }] });
    }
    const icon = a.severity === 'critical' ? ':rotating_light:' : ':warning:';
    return JSON.stringify({
      text: `${icon} ${a.kind.replace('_', ' ')} for ${a.customer}${a.meter ? ` (${a.meter})` : ''}: ${a.message}`,
      blocks: [{ type: 'section', text: { type: 'mrkdwn', text: `${icon} *${a.kind.replace('_', ' ')}* for *${a.customer}*${a.meter ? ` · ${a.meter}` : ''}\n${a.message}` } }],
    });
  }
  return JSON.stringify({ type: event, anomaly: a });
}

export interface AlertDispatcherDeps {
  nc: NatsConnection;
  subjectPrefix: string;
  webhooks: Pick<CatalogReplica<Webhook>, 'get' | 'list'>;
  /** The attempt log (ClickHouse `alert_deliveries`). */
  attempts: AttemptLog;
  logger: Logger;
  /** Where deliveries wait (JetStream, DeliveryQueue), so they survive a restart. */
  queue: DeliveryStore;
  fetch?: typeof fetch;
  /** Waits between attempts (DEFAULT_RETRY_DELAYS_MS: over ~24 h); after the last one a delivery has failed. */
  retryDelaysMs?: readonly number[];
  /** Attempts this process runs at once. */
  concurrency?: number;
  /** Timeout of one HTTP attempt. */
  attemptTimeoutMs?: number;
  /** `meterline_alerts_delivery_attempts_total` (common/metrics.ts); absent: counted nowhere. */
  metrics?: Pick<Metrics, 'alertDeliveryAttempts'>;
}

/** An attempt log row of `alert_deliveries`, as the API returns it. */
export interface DeliveryAttempt {
  anomalyId: string;
  event: string;
  attempt: number;
  ok: boolean;
  httpStatus: number;
  error: string;
  at: string;
}

/**
 * Delivers alerts: published on `meterline.alerts.<kind>` for other NATS consumers, and queued
 * on JetStream once per webhook that wants the kind (DeliveryQueue). The worker (`start`, in
 * every process that may dispatch; all share one durable consumer, so a message is attempted by
 * one process at a time) POSTs it, acks after a 2xx and otherwise retries after the next wait of
 * `retryDelaysMs` (1 min … 9 h, ~24 h in all), then gives up (`failed`). Every attempt is logged
 * in `alert_deliveries`; each delivery's state is in the queue's KV bucket.
 */
export class AlertDispatcher {
  private readonly enqueuing = new Set<Promise<void>>();
  private readonly handling = new Set<Promise<void>>();
  /** Deliveries this process queued whose first attempt has not been seen yet (for `idle`). */
  private readonly awaiting = new Map<string, string>();
  private messages: DeliveryFeed | undefined;
  private loop: Promise<void> | undefined;
  private readonly attemptsTotal: Counter<'outcome'>;

  constructor(private readonly deps: AlertDispatcherDeps) {
    this.attemptsTotal = deps.metrics?.alertDeliveryAttempts ?? new Counter({ name: 'meterline_alerts_delivery_attempts_total', help: 'unregistered', labelNames: ['outcome'], registers: [] });
  }

  dispatch(event: AlertEvent, a: Anomaly): void {
    try {
      this.deps.nc.publish(`${this.deps.subjectPrefix}.${a.kind}`, JSON.stringify({ type: event, anomaly: a }));
    } catch (err) {
      this.deps.logger.warn({ err: errorMessage(err) }, 'could not publish the alert on NATS');
    }
    for (const w of this.deps.webhooks.list()) {
      if (w.kinds.length > 0 && !w.kinds.includes(a.kind)) continue;
      const id = deliveryId(event, a, w.id);
      const p = this.deps.queue
        .enqueue({ id, webhookId: w.id, event, anomaly: a, enqueuedAt: new Date().toISOString() }, Date.now())
        .then((r) => void (r === 'queued' && this.awaiting.set(id, w.id)))
        .catch((err: unknown) => this.deps.logger.error({ err: errorMessage(err), webhook: w.id, anomaly: a.id }, 'could not queue an alert delivery'))
        .finally(() => this.enqueuing.delete(p));
      this.enqueuing.add(p);
    }
  }

  /** Starts attempting queued deliveries (those of every process, from before a restart too). */
  async start(): Promise<void> {
    if (this.messages) return;
    const max = this.deps.concurrency ?? 8;
    const messages = await this.deps.queue.consume(max);
    this.messages = messages;
    this.loop = (async () => {
      for await (const m of messages) {
        const p = this.handle(m).finally(() => this.handling.delete(p));
        this.handling.add(p);
        while (this.handling.size >= max) await Promise.race(this.handling);
      }
    })().catch((err: unknown) => this.deps.logger.error({ err: errorMessage(err) }, 'alert delivery worker stopped; queued deliveries wait for another worker or a restart'));
  }

  /** Stops taking messages and waits for the attempts under way; what is left stays queued. */
  async stop(): Promise<void> {
    await this.messages?.close();
    await this.loop;
    await Promise.allSettled([...this.handling]);
    this.messages = undefined;
  }

  /** Waits until every delivery this process queued has had its first attempt (by any process). */
  async idle(): Promise<void> {
    while (this.enqueuing.size > 0) await Promise.allSettled([...this.enqueuing]);
    while (this.awaiting.size > 0) {
      for (const [id, webhookId] of this.awaiting) {
        const s = await this.deps.queue.get(id, webhookId).catch(() => undefined);
        if (s && (s.attempts > 0 || s.status === 'delivered' || s.status === 'failed')) this.awaiting.delete(id);
      }
      if (this.awaiting.size > 0) await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * One attempt of a queued delivery. Order of effects: (1) a message whose delivery is already
   * delivered or failed (its ack was lost in a crash) is acked or dropped without a POST; (2) the
   * POST; (3) the attempt is logged in `alert_deliveries`; (4) the state is written; (5) ack after
   * a 2xx, nak with the next wait, or term when the waits are used up. A crash after (2) and
   * before (5) redelivers the message after the ack wait: after a 2xx, (1) then acks it without a
   * second POST once (4) was written.
   */
  private async handle(m: QueuedDelivery): Promise<void> {
    const { queue, logger } = this.deps;
    let msg: DeliveryMessage;
    try {
      msg = m.json<DeliveryMessage>();
    } catch (err) {
      logger.error({ err: errorMessage(err), seq: m.seq }, 'an alert delivery message is not JSON; dropped');
      return m.term();
    }
    try {
      const round = msg.redeliveries ?? 0;
      let s = await queue.get(msg.id, msg.webhookId);
      if (s && s.redeliveries > round) return m.ack(); // a newer redelivery is queued
      if (!s || s.redeliveries < round) s = { ...pendingState(msg, Date.now(), round), ...(s ? { createdAt: s.createdAt } : {}) };
      if (s.status === 'delivered') return m.ack();
      if (s.status === 'failed') return m.term();
      const w = this.deps.webhooks.get(msg.webhookId);
      if (!w) {
        await queue.put({ ...s, status: 'failed', nextAttemptAt: null, lastError: 'the webhook was deleted', updatedAt: new Date().toISOString() });
        return m.term();
      }
      m.working();
      const outcome = await this.post(w, msg.event, msg.anomaly, msg.id);
      const next = afterAttempt(s, outcome, Date.now(), this.deps.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS);
      await this.deps.attempts.record({ anomalyId: msg.anomaly.id, webhookId: w.id, event: msg.event, attempt: next.state.attempts, ok: outcome.ok, httpStatus: outcome.httpStatus, error: outcome.error });
      // After a 2xx the message is acked even if the state cannot be written: no second POST.
      await queue.put(next.state).catch((err: unknown) => {
        if (next.action.type !== 'ack') throw err;
        logger.error({ err: errorMessage(err), delivery: msg.id }, 'could not record a delivered alert');
      });
      this.attemptsTotal.inc({ outcome: next.state.status });
      if (next.action.type === 'ack') m.ack();
      else if (next.action.type === 'nak') m.nak(next.action.delayMs);
      else m.term();
      if (!outcome.ok) logger.warn({ webhook: w.id, anomaly: msg.anomaly.id, delivery: msg.id, attempt: next.state.attempts, error: outcome.error, status: next.state.status, nextAttemptAt: next.state.nextAttemptAt }, 'alert delivery failed');
    } catch (err) {
      logger.error({ err: errorMessage(err) }, 'alert delivery could not be handled; it comes back in a minute');
      m.nak(60_000);
    }
  }

  private async post(w: Webhook, event: AlertEvent, a: Anomaly, id: string): Promise<{ ok: boolean; httpStatus: number; error: string }> {
    const body = alertBody(w, event, a);
    const doFetch = this.deps.fetch ?? fetch;
    let status = 0;
    let error = '';
    try {
      const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'meterline-alerts/1', 'meterline-event': event, 'meterline-delivery': id };
      if (w.format === 'json') headers[SIGNATURE_HEADER] = signPayload(w.secret, body, Math.floor(Date.now() / 1000));
      const res = await doFetch(w.url, { method: 'POST', headers, body, signal: AbortSignal.timeout(this.deps.attemptTimeoutMs ?? 10_000) });
      status = res.status;
      await res.arrayBuffer().catch(() => undefined);
      if (!res.ok) error = `HTTP ${res.status}`;
    } catch (err) {
      error = errorMessage(err);
    }
    return { ok: error === '', httpStatus: status, error };
  }

  /** The state of each delivery (pending, retrying, delivered, failed), most recently changed first. */
  states(filter: { webhookId?: string; status?: DeliveryStatus; limit?: number } = {}): Promise<DeliveryState[]> {
    return this.deps.queue.list(filter);
  }

  /** Queues a delivery that failed (or was delivered) again, with the anomaly as it is now. */
  redeliver(id: string, anomaly: (id: string) => Promise<Anomaly>): Promise<DeliveryState> {
    return this.deps.queue.redeliver(id, anomaly, Date.now());
  }

  /** Every attempt to one webhook, newest first. */
  deliveries(webhookId: string, limit = 100): Promise<DeliveryAttempt[]> {
    return this.deps.attempts.list(webhookId, limit);
  }
}

/** The log of every attempt: appended after each attempt, read by the API. */
export interface AttemptLog {
  record(a: { anomalyId: string; webhookId: string; event: string; attempt: number; ok: boolean; httpStatus: number; error: string }): Promise<void>;
  list(webhookId: string, limit: number): Promise<DeliveryAttempt[]>;
}

/** The attempt log in ClickHouse `alert_deliveries`; a failed write is logged, never thrown. */
export class ClickHouseAttemptLog implements AttemptLog {
  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
  ) {}

  async record(a: { anomalyId: string; webhookId: string; event: string; attempt: number; ok: boolean; httpStatus: number; error: string }): Promise<void> {
    await this.store.ch
      .insert({ table: `${this.store.db}.alert_deliveries`, values: [{ anomaly_id: a.anomalyId, webhook_id: a.webhookId, event: a.event, attempt: a.attempt, ok: a.ok, http_status: a.httpStatus, error: a.error.slice(0, 500), at: Date.now() }], format: 'JSONEachRow' })
      .catch((err: unknown) => this.logger.error({ err: errorMessage(err) }, 'could not log an alert delivery'));
  }

  async list(webhookId: string, limit = 100): Promise<DeliveryAttempt[]> {
    const rs = await this.store.ch.query({
      query: `SELECT anomaly_id, event, attempt, ok, http_status, error, toString(toUnixTimestamp64Milli(at)) AS at FROM ${this.store.db}.alert_deliveries WHERE webhook_id = {w:String} ORDER BY at DESC LIMIT {limit:UInt32}`,
      query_params: { w: webhookId, limit },
      format: 'JSONEachRow',
      clickhouse_settings: { output_format_json_quote_64bit_integers: 0 },
    });
    return (await rs.json<{ anomaly_id: string; event: string; attempt: number; ok: boolean | number; http_status: number; error: string; at: string }>()).map((r) => ({
      anomalyId: r.anomaly_id,
      event: r.event,
      attempt: Number(r.attempt),
      ok: Boolean(r.ok),
      httpStatus: Number(r.http_status),
      error: r.error,
      at: new Date(Number(r.at)).toISOString(),
    }));
  }
}
