import { pino } from 'pino';
import { createMetrics } from '../common/metrics.ts';
import { describe, expect, it } from 'vitest';
import { AlertDispatcher, SIGNATURE_HEADER, signPayload, type AttemptLog, type DeliveryAttempt, type Webhook } from './alerts.ts';
import { deliveryId, type DeliveryFeed, type DeliveryMessage, type DeliveryState, type DeliveryStore, type QueuedDelivery } from './delivery.ts';
import type { Anomaly } from './store.ts';
import { sampleAnomaly } from './test-anomaly.ts';

// The dispatcher and its worker with in-memory collaborators (queue, attempt log, HTTP): every
// effect is appended to one log, so the tests read the order of effects of an attempt.

const anomaly: Anomaly = sampleAnomaly();

const hook = (id: string, kinds: string[] = []): Webhook => ({ id, url: `https://example.test/${id}`, format: 'json', secret: `whsec_${id}`, kinds, createdAt: '2026-01-01T00:00:00.000Z' });

class Feed implements DeliveryFeed {
  private readonly items: QueuedDelivery[] = [];
  private wake: (() => void) | undefined;
  private closed = false;

  push(m: QueuedDelivery): void {
    this.items.push(m);
    this.wake?.();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<QueuedDelivery> {
    for (;;) {
      while (this.items.length > 0) yield this.items.shift()!;
      if (this.closed) return;
      await new Promise<void>((r) => (this.wake = r));
    }
  }
}

class Msg implements QueuedDelivery {
  static seqs = 0;
  readonly seq = ++Msg.seqs;
  constructor(
    private readonly body: DeliveryMessage,
    private readonly effects: string[],
  ) {}
  json<T>(): T {
    return structuredClone(this.body) as T;
  }
  ack(): void {
    this.effects.push('ack');
  }
  nak(millis?: number): void {
    this.effects.push(`nak ${millis}`);
  }
  term(): void {
    this.effects.push('term');
  }
  working(): void {
    this.effects.push('working');
  }
}

/** DeliveryQueue's contract in memory: a state per delivery, a message per enqueue (once per id). */
class Queue implements DeliveryStore {
  readonly states = new Map<string, DeliveryState>();
  readonly feed = new Feed();
  failPuts = false;
  constructor(private readonly effects: string[]) {}

  async enqueue(m: DeliveryMessage, nowMs: number): Promise<'queued' | 'exists'> {
    if (this.states.has(m.id)) return 'exists';
    this.effects.push(`enqueue ${m.webhookId}`);
    this.feed.push(new Msg({ ...m, redeliveries: 0 }, this.effects));
    const at = new Date(nowMs).toISOString();
    this.states.set(m.id, { id: m.id, webhookId: m.webhookId, anomalyId: m.anomaly.id, event: m.event, status: 'pending', attempts: 0, nextAttemptAt: null, lastStatus: 0, lastError: '', createdAt: at, updatedAt: at, deliveredAt: null, redeliveries: 0 });
    return 'queued';
  }
  async get(id: string): Promise<DeliveryState | undefined> {
    return structuredClone(this.states.get(id));
  }
  async put(s: DeliveryState): Promise<void> {
    if (this.failPuts) throw new Error('NATS away');
    this.effects.push(`state ${s.status}`);
    this.states.set(s.id, structuredClone(s));
  }
  async list(): Promise<DeliveryState[]> {
    return [...this.states.values()];
  }
  async redeliver(): Promise<DeliveryState> {
    throw new Error('not used');
  }
  async consume(): Promise<DeliveryFeed> {
    return this.feed;
  }
}

class Attempts implements AttemptLog {
  readonly rows: Parameters<AttemptLog['record']>[0][] = [];
  constructor(private readonly effects: string[]) {}
  async record(a: Parameters<AttemptLog['record']>[0]): Promise<void> {
    this.effects.push(`log attempt ${a.attempt} ${a.ok ? 'ok' : 'failed'}`);
    this.rows.push(a);
  }
  async list(): Promise<DeliveryAttempt[]> {
    return [];
  }
}

function setup(opts: { webhooks?: Webhook[]; status?: (n: number) => number; delays?: number[] } = {}) {
  const effects: string[] = [];
  const queue = new Queue(effects);
  const attempts = new Attempts(effects);
  const hooks = new Map((opts.webhooks ?? [hook('whk_a')]).map((w) => [w.id, w]));
  const requests: { url: string; headers: Record<string, string>; body: string }[] = [];
  const published: string[] = [];
  const metrics = createMetrics();
  const fetch = async (url: string | URL | Request, init?: RequestInit) => {
    requests.push({ url: String(url), headers: init!.headers as Record<string, string>, body: String(init!.body) });
    effects.push(`POST ${String(url)}`);
    return new Response(null, { status: opts.status?.(requests.length) ?? 204 });
  };
  const dispatcher = new AlertDispatcher({
    nc: { publish: (subject: string) => void published.push(subject) } as unknown as ConstructorParameters<typeof AlertDispatcher>[0]['nc'],
    subjectPrefix: 'meterline.alerts',
    webhooks: { get: (id) => hooks.get(id), list: () => [...hooks.values()] },
    attempts,
    logger: pino({ level: 'silent' }),
    queue,
    fetch: fetch as typeof globalThis.fetch,
    retryDelaysMs: opts.delays ?? [60_000, 300_000],
    metrics,
  });
  return { dispatcher, queue, attempts, effects, requests, published, hooks, registry: metrics.registry };
}

const message = (webhookId: string, redeliveries = 0): DeliveryMessage => ({ id: deliveryId('anomaly.opened', anomaly, webhookId), webhookId, event: 'anomaly.opened', anomaly, enqueuedAt: anomaly.lastDetectedAt, redeliveries });

describe('AlertDispatcher', () => {
  it('queues one delivery per webhook that wants the kind, once per event, and acks only after the 2xx is logged and recorded', async () => {
    const t = setup({ webhooks: [hook('whk_a'), hook('whk_gaps', ['gap'])] });
    await t.dispatcher.start();
    t.dispatcher.dispatch('anomaly.opened', anomaly);
    t.dispatcher.dispatch('anomaly.opened', structuredClone(anomaly));
    await t.dispatcher.idle();
    await t.dispatcher.stop();

    expect(t.published).toEqual(['meterline.alerts.spike', 'meterline.alerts.spike']);
    expect(t.effects).toEqual(['enqueue whk_a', 'working', 'POST https://example.test/whk_a', 'log attempt 1 ok', 'state delivered', 'ack']);
    const id = deliveryId('anomaly.opened', anomaly, 'whk_a');
    expect(t.queue.states.get(id)).toMatchObject({ status: 'delivered', attempts: 1, lastStatus: 204 });
    const [req] = t.requests;
    expect(req!.headers['meterline-delivery']).toBe(id);
    const t0 = /^t=(\d+),/.exec(req!.headers[SIGNATURE_HEADER]!)![1]!;
    expect(req!.headers[SIGNATURE_HEADER]).toBe(signPayload('whsec_whk_a', req!.body, Number(t0)));
  });

  it('a failed attempt is logged, recorded retrying, and nakked with the next wait; after the last wait it has failed and leaves the queue', async () => {
    const t = setup({ status: () => 503, delays: [60_000] });
    await t.dispatcher.start();
    t.dispatcher.dispatch('anomaly.opened', anomaly);
    await t.dispatcher.idle();
    const id = deliveryId('anomaly.opened', anomaly, 'whk_a');
    expect(t.queue.states.get(id)).toMatchObject({ status: 'retrying', attempts: 1, lastStatus: 503, lastError: 'HTTP 503' });
    // The server hands it back when the wait is over.
    t.queue.feed.push(new Msg(message('whk_a'), t.effects));
    await t.dispatcher.stop();
    expect(t.effects).toEqual(['enqueue whk_a', 'working', 'POST https://example.test/whk_a', 'log attempt 1 failed', 'state retrying', 'nak 60000', 'working', 'POST https://example.test/whk_a', 'log attempt 2 failed', 'state failed', 'term']);
    expect(t.queue.states.get(id)).toMatchObject({ status: 'failed', attempts: 2, nextAttemptAt: null });
    const counted = (await t.registry.getSingleMetric('meterline_alerts_delivery_attempts_total')!.get()).values.map((v) => [v.labels.outcome, v.value]);
    expect(counted).toEqual([['retrying', 1], ['failed', 1]]);
  });

  it('a message whose delivery was already delivered (its ack lost in a crash) is acked without a second POST', async () => {
    const t = setup();
    await t.dispatcher.start();
    t.dispatcher.dispatch('anomaly.opened', anomaly);
    await t.dispatcher.idle();
    t.queue.feed.push(new Msg(message('whk_a'), t.effects)); // the same message again
    await t.dispatcher.stop();
    expect(t.effects.filter((e) => e.startsWith('POST'))).toHaveLength(1);
    expect(t.effects.slice(-1)).toEqual(['ack']);
  });

  it('a message from before a manual redelivery is dropped; one for a deleted webhook fails without a POST', async () => {
    const t = setup({ webhooks: [hook('whk_a'), hook('whk_gone')] });
    const stale = message('whk_a', 0);
    t.queue.states.set(stale.id, { ...(await enqueued(t.queue, stale)), redeliveries: 2 });
    t.hooks.delete('whk_gone');
    const gone = message('whk_gone');
    await enqueued(t.queue, gone);
    t.effects.length = 0;
    await t.dispatcher.start();
    t.queue.feed.push(new Msg(stale, t.effects));
    t.queue.feed.push(new Msg(gone, t.effects));
    await t.dispatcher.stop();
    expect(t.requests).toEqual([]);
    expect(t.effects).toEqual(['ack', 'state failed', 'term']);
    expect(t.queue.states.get(gone.id)).toMatchObject({ status: 'failed', lastError: 'the webhook was deleted' });
  });

  it('after a 2xx the message is acked even when the state cannot be written; after a failure it comes back in a minute', async () => {
    const ok = setup();
    await ok.dispatcher.start();
    ok.queue.failPuts = true;
    ok.queue.feed.push(new Msg(message('whk_a'), ok.effects));
    await ok.dispatcher.stop();
    expect(ok.effects).toEqual(['working', 'POST https://example.test/whk_a', 'log attempt 1 ok', 'ack']);

    const failing = setup({ status: () => 500 });
    await failing.dispatcher.start();
    failing.queue.failPuts = true;
    failing.queue.feed.push(new Msg(message('whk_a'), failing.effects));
    await failing.dispatcher.stop();
    expect(failing.effects).toEqual(['working', 'POST https://example.test/whk_a', 'log attempt 1 failed', 'nak 60000']);
  });
});

/** Enqueues without a message in the feed (as if it had been taken already); returns the state. */
async function enqueued(q: Queue, m: DeliveryMessage): Promise<DeliveryState> {
  await q.enqueue(m, Date.now());
  (q.feed as unknown as { items: QueuedDelivery[] }).items.length = 0;
  return q.states.get(m.id)!;
}
