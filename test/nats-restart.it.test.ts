import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { client, total } from './api-client.ts';
import { ce, eventually, startTestNats, startTestRuntime, testConfig, type TestRuntime } from './harness.ts';

/**
 * NATS is restarted while producers send. Ingest answers 503 with Retry-After while it cannot
 * store; producers retry with the same Idempotency-Key. No acknowledged event is lost, none is
 * doubled, and the processor resumes by itself.
 */
describe('NATS restart under load', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;

  beforeAll(async () => {
    nats = await startTestNats();
    rt = await startTestRuntime(testConfig(nats.url, { INGEST_PUBLISH_TIMEOUT: '1s' }));
  });
  afterAll(async () => {
    await rt?.stop();
    await nats?.stop();
  });

  it('loses no acknowledged event', async () => {
    const c = client(rt.app!, rt.adminKey);
    await c.createMeter({ slug: 'req', eventType: 'req', aggregation: 'COUNT' });
    await c.createMeter({ slug: 'units', eventType: 'req', aggregation: 'SUM', valueProperty: '$.units' });
    const batches = 120;
    const perBatch = 50;
    const acked = new Set<number>();
    const statuses = new Map<number, number>();
    let restarted = false;
    let stopped = false;

    const producer = async (worker: number) => {
      for (let b = worker; b < batches; b += 2) {
        // The second half is sent once NATS is down, so it meets the outage whatever the machine's speed.
        if (b === batches / 2 || b === batches / 2 + 1) await eventually(async () => stopped, (s) => s, 60_000);
        const events = Array.from({ length: perBatch }, (_, i) => ce({ id: `r-${b}-${i}`, type: 'req', subject: 'acme', time: '2026-11-02T00:00:00Z', data: { units: 2 } }));
        for (let attempt = 0; ; attempt++) {
          const r = await c.ingest(events, { 'idempotency-key': `batch-${b}` });
          statuses.set(r.statusCode, (statuses.get(r.statusCode) ?? 0) + 1);
          if (r.statusCode === 202) {
            acked.add(b);
            break;
          }
          expect([429, 503]).toContain(r.statusCode);
          expect(r.headers['retry-after']).toBeDefined();
          expect(attempt).toBeLessThan(200);
          await new Promise((res) => setTimeout(res, 100));
        }
      }
    };
    const chaos = async () => {
      await eventually(async () => acked.size, (n) => n >= 20, 30_000);
      const { port, storeDir } = nats;
      await nats.stop();
      stopped = true;
      await new Promise((res) => setTimeout(res, 1_500));
      nats = await startTestNats(storeDir, port);
      restarted = true;
    };
    await Promise.all([producer(0), producer(1), chaos()]);
    expect(restarted).toBe(true);
    expect(acked.size).toBe(batches);
    // Some requests were refused while NATS was down (and retried).
    expect(statuses.get(503) ?? 0).toBeGreaterThan(0);

    await eventually(() => total(c, 'req', 'acme'), (v) => v === String(batches * perBatch), 60_000);
    expect(await total(c, 'units', 'acme')).toBe(String(batches * perBatch * 2));
  }, 180_000);
});
