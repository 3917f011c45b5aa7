import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnomalyStore, DELIVERY_CONSUMER, DeliveryQueue, deliveryId, type Anomaly, type DeliveryState } from '../anomaly/index.ts';
import { deliveryQueueOptions } from '../cli/runtime.ts';
import { loadConfig } from '../common/config.ts';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { sampleAnomaly } from '../anomaly/test-anomaly.ts';
import { client } from './api-client.ts';
import { MeterlineProcess } from './child.ts';
import { eventually, randomDatabase, startTestNats, startTestRuntime, tempDir, testConfig, type TestRuntime } from './harness.ts';

/**
 * Webhook deliveries wait in JetStream: a delivery that is failing when Meterline is killed with
 * SIGKILL is delivered after the restart, exactly once; one that fails every attempt ends
 * `failed` and can be queued again over the API.
 */

const anomaly = (id: string): Anomaly => sampleAnomaly({ id });

/** A webhook receiver on localhost answering 503 while `down`, else 204; it counts both. */
class Receiver {
  down = true;
  failed = 0;
  delivered: { delivery: string; body: string }[] = [];
  url = '';
  private server: Server | undefined;

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      let body = '';
      req.on('data', (b: Buffer) => (body += b.toString()));
      req.on('end', () => {
        if (this.down) {
          this.failed++;
          res.writeHead(503).end();
          return;
        }
        this.delivered.push({ delivery: String(req.headers['meterline-delivery']), body });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    this.url = `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    await new Promise((r) => this.server?.close(r));
  }
}

/** Nothing left to deliver: the work queue is empty and the consumer holds nothing. */
async function queueEmpty(jsm: JetStreamManager, stream: string): Promise<boolean> {
  const [si, ci] = await Promise.all([jsm.streams.info(stream), jsm.consumers.info(stream, DELIVERY_CONSUMER)]);
  return si.state.messages === 0 && ci.num_pending === 0 && ci.num_ack_pending === 0;
}

describe('alert deliveries survive a restart', () => {
  let nats: NatsServerHandle;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  const receiver = new Receiver();

  beforeAll(async () => {
    await receiver.start();
    nats = await startTestNats();
    nc = await connect({ servers: nats.url });
    jsm = await jetstreamManager(nc);
  });
  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
    await receiver.stop();
  });

  it('a delivery failing when Meterline is killed (SIGKILL) is delivered after the restart, exactly once', async () => {
    // A quick retry, then waits long enough to kill the process between two attempts (a message
    // handed to a process as it dies would come back only after the ack wait, 2 min).
    const env = { NATS_URL: nats.url, CLICKHOUSE_DATABASE: randomDatabase(), CLICKHOUSE_DATA_DIR: tempDir('meterline-child-ch-'), ALERT_RETRY_DELAYS: '200ms,3s,3s,3s,3s,3s,3s,3s,3s' };
    const ml = new MeterlineProcess(env, tempDir('meterline-child-'));
    try {
      await ml.start();
      const hook = await ml.post('/api/v1/webhooks', { url: `${receiver.url}/hook`, format: 'json' });
      expect(hook.status).toBe(201);
      const { id: hookId } = (await hook.json()) as { id: string };

      // Queued the way the dispatcher queues it, from another process on the same installation.
      const opts = deliveryQueueOptions(loadConfig(env));
      const queue = await DeliveryQueue.open(jetstream(nc), jsm, opts);
      const a = anomaly('anom_restart');
      const id = deliveryId('anomaly.opened', a, hookId);
      expect(await queue.enqueue({ id, webhookId: hookId, event: 'anomaly.opened', anomaly: a, enqueuedAt: new Date().toISOString() }, Date.now())).toBe('queued');
      // The same event again is the same delivery.
      expect(await queue.enqueue({ id, webhookId: hookId, event: 'anomaly.opened', anomaly: a, enqueuedAt: new Date().toISOString() }, Date.now())).toBe('exists');

      // The first attempts fail; the state says so over the API.
      const retrying = await eventually(
        () => ml.api<{ items: DeliveryState[] }>('/api/v1/alert-deliveries?status=retrying'),
        (r) => (r.items[0]?.attempts ?? 0) >= 2,
      );
      expect(retrying.items).toEqual([expect.objectContaining({ id, webhookId: hookId, anomalyId: a.id, event: 'anomaly.opened', status: 'retrying', lastStatus: 503, lastError: 'HTTP 503', deliveredAt: null })]);
      expect(Date.parse(retrying.items[0]!.nextAttemptAt!)).toBeGreaterThan(Date.parse(retrying.items[0]!.updatedAt));

      await ml.kill('SIGKILL');
      const failedBefore = receiver.failed;
      expect(failedBefore).toBeGreaterThanOrEqual(2);
      expect(receiver.delivered).toEqual([]);
      receiver.down = false;

      await ml.start();
      const done = await eventually(
        () => ml.api<{ items: DeliveryState[] }>(`/api/v1/alert-deliveries?webhook=${hookId}`),
        (r) => r.items[0]?.status === 'delivered',
      );
      expect(done.items).toEqual([expect.objectContaining({ id, status: 'delivered', attempts: failedBefore + 1, lastStatus: 204, lastError: '', nextAttemptAt: null })]);
      await eventually(() => queueEmpty(jsm, opts.stream), (empty) => empty);
      expect(receiver.delivered).toHaveLength(1);
      expect(receiver.delivered[0]!.delivery).toBe(id);
      expect(JSON.parse(receiver.delivered[0]!.body)).toMatchObject({ type: 'anomaly.opened', anomaly: { id: a.id } });

      // The attempt log (every attempt, across the restart) and the states, on the webhook.
      const log = await ml.api<{ items: { anomalyId: string; attempt: number; ok: boolean; httpStatus: number }[]; deliveries: DeliveryState[] }>(`/api/v1/webhooks/${hookId}/deliveries`);
      expect(log.items.map((i) => [i.attempt, i.ok, i.httpStatus]).reverse()).toEqual([...Array.from({ length: failedBefore }, (_, k) => [k + 1, false, 503]), [failedBefore + 1, true, 204]]);
      expect(log.deliveries).toEqual([expect.objectContaining({ id, status: 'delivered' })]);
    } finally {
      await ml.kill();
    }
  }, 240_000);

  describe('in one process', () => {
    let rt: TestRuntime;
    let c: ReturnType<typeof client>;

    beforeAll(async () => {
      // Another installation on the same nats-server: its own stream, subjects and catalog.
      rt = await startTestRuntime(testConfig(nats.url, { NATS_STREAM: 'EVENTS2', NATS_SUBJECT_PREFIX: 'ml2.events', NATS_KV_BUCKET: 'catalog2', ALERT_RETRY_DELAYS: '100ms,100ms', ANOMALY_SCHEDULE: '0 0 1 1 *', BILLING_SCHEDULE: '0 0 1 1 *' }), ['api']);
      c = client(rt.app!, rt.adminKey);
    }, 120_000);
    afterAll(async () => {
      await rt?.stop();
    });

    it('a delivery failing every attempt ends failed; redelivered over the API it is delivered', async () => {
      receiver.down = true;
      receiver.delivered = [];
      const hook = (await c.post('/api/v1/webhooks', { url: `${receiver.url}/hook2`, format: 'json', kinds: ['spike'] })).json() as { id: string };
      const a = anomaly('anom_fails');
      rt.alerts!.dispatch('anomaly.opened', a);
      rt.alerts!.dispatch('anomaly.opened', a); // the same event twice: one delivery
      rt.alerts!.dispatch('anomaly.opened', { ...a, id: 'anom_gap', kind: 'gap' }); // a kind the webhook does not want
      await rt.alerts!.idle();

      const failed = await eventually(
        async () => (await c.get(`/api/v1/alert-deliveries?webhook=${hook.id}`)).json() as { items: DeliveryState[] },
        (r) => r.items[0]?.status === 'failed',
      );
      expect(failed.items).toEqual([expect.objectContaining({ anomalyId: a.id, status: 'failed', attempts: 3, lastStatus: 503, nextAttemptAt: null })]);
      expect(((await c.get('/api/v1/alert-deliveries?status=failed')).json() as { items: DeliveryState[] }).items.map((d) => d.id)).toEqual([failed.items[0]!.id]);
      expect(((await c.get('/api/v1/alert-deliveries?status=pending')).json() as { items: DeliveryState[] }).items).toEqual([]);
      expect((await c.get('/api/v1/alert-deliveries?status=nonsense')).statusCode).toBe(400);

      receiver.down = false;
      // Redeliver needs the anomaly as it is now: store it first.
      await new AnomalyStore(rt.store!).write(a);
      const again = await c.post(`/api/v1/alert-deliveries/${failed.items[0]!.id}/redeliver`);
      expect(again.statusCode).toBe(200);
      expect(again.json()).toMatchObject({ id: failed.items[0]!.id, status: 'pending', attempts: 0, redeliveries: 1 });
      await eventually(
        async () => (await c.get(`/api/v1/alert-deliveries?webhook=${hook.id}`)).json() as { items: DeliveryState[] },
        (r) => r.items[0]?.status === 'delivered',
      );
      expect(receiver.delivered.map((d) => d.delivery)).toEqual([failed.items[0]!.id]);
      expect((await c.post(`/api/v1/alert-deliveries/nope/redeliver`)).statusCode).toBe(404);
    });
  });
});
