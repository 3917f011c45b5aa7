import { createHmac } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import type { CatalogReplica } from '../common/catalog.ts';
import type { Store } from '../common/clickhouse.ts';
import { errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
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

export type AlertEvent = 'anomaly.opened' | 'anomaly.escalated';

export function alertBody(webhook: Pick<Webhook, 'format'>, event: AlertEvent, a: Anomaly): string {
  if (webhook.format === 'slack') {
    const icon = a.severity === 'critical' ? ':rotating_light:' : ':warning:';
    return JSON.stringify({
      text: `${icon} ${a.kind.replace('_', ' ')} for ${a.customer}${a.meter ? ` (${a.meter})` : ''}: ${a.message}`,
      blocks: [{ type: 'section', text: { type: 'mrkdwn', text: `${icon} *${a.kind.replace('_', ' ')}* for *${a.customer}*${a.meter ? ` · ${a.meter}` : ''}\n${a.message}` } }],
    });
  }
  return JSON.stringify({ type: event, anomaly: a });
}

const RETRY_DELAYS_MS = [0, 1_000, 5_000, 30_000];

/**
 * Delivers alerts: published on `meterline.alerts.<kind>` for other NATS consumers, and POSTed
 * to every webhook that wants the kind, with retries and backoff (1 s, 5 s, 30 s). Every attempt
 * is logged in `alert_deliveries`. Deliveries run in the background; `idle()` waits for them.
 */
export class AlertDispatcher {
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly deps: { nc: NatsConnection; subjectPrefix: string; webhooks: CatalogReplica<Webhook>; store: Store; logger: Logger; fetch?: typeof fetch; retryDelaysMs?: number[] },
  ) {}

  dispatch(event: AlertEvent, a: Anomaly): void {
    try {
      this.deps.nc.publish(`${this.deps.subjectPrefix}.${a.kind}`, JSON.stringify({ type: event, anomaly: a }));
    } catch (err) {
      this.deps.logger.warn({ err: errorMessage(err) }, 'could not publish the alert on NATS');
    }
    for (const w of this.deps.webhooks.list()) {
      if (w.kinds.length > 0 && !w.kinds.includes(a.kind)) continue;
      const p = this.deliver(w, event, a).finally(() => this.inFlight.delete(p));
      this.inFlight.add(p);
    }
  }

  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private async deliver(w: Webhook, event: AlertEvent, a: Anomaly): Promise<void> {
    const body = alertBody(w, event, a);
    const delays = this.deps.retryDelaysMs ?? RETRY_DELAYS_MS;
    const doFetch = this.deps.fetch ?? fetch;
    for (let attempt = 1; attempt <= delays.length; attempt++) {
      const wait = delays[attempt - 1]!;
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      let status = 0;
      let error = '';
      try {
        const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'meterline-alerts/1', 'meterline-event': event };
        if (w.format === 'json') headers[SIGNATURE_HEADER] = signPayload(w.secret, body, Math.floor(Date.now() / 1000));
        const res = await doFetch(w.url, { method: 'POST', headers, body, signal: AbortSignal.timeout(10_000) });
        status = res.status;
        await res.arrayBuffer().catch(() => undefined);
        if (!res.ok) error = `HTTP ${res.status}`;
      } catch (err) {
        error = errorMessage(err);
      }
      await this.log(a.id, w.id, event, attempt, error === '', status, error);
      if (error === '') return;
      this.deps.logger.warn({ webhook: w.id, anomaly: a.id, attempt, error }, 'alert delivery failed');
    }
  }

  private async log(anomalyId: string, webhookId: string, event: string, attempt: number, ok: boolean, httpStatus: number, error: string): Promise<void> {
    await this.deps.store.ch
      .insert({ table: `${this.deps.store.db}.alert_deliveries`, values: [{ anomaly_id: anomalyId, webhook_id: webhookId, event, attempt, ok, http_status: httpStatus, error: error.slice(0, 500), at: Date.now() }], format: 'JSONEachRow' })
      .catch((err: unknown) => this.deps.logger.error({ err: errorMessage(err) }, 'could not log an alert delivery'));
  }

  async deliveries(webhookId: string, limit = 100): Promise<{ anomalyId: string; event: string; attempt: number; ok: boolean; httpStatus: number; error: string; at: string }[]> {
    const rs = await this.deps.store.ch.query({
      query: `SELECT anomaly_id, event, attempt, ok, http_status, error, toString(toUnixTimestamp64Milli(at)) AS at FROM ${this.deps.store.db}.alert_deliveries WHERE webhook_id = {w:String} ORDER BY at DESC LIMIT {limit:UInt32}`,
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
