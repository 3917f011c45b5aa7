import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Decimal } from 'decimal.js';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { MeterlineProcess } from './child.ts';
import { eventually, randomDatabase, startTestNats, tempDir } from './harness.ts';

/**
 * The processor is killed with SIGKILL in the middle of a stream, twice, and restarted: every
 * total is exact, nothing missing, nothing doubled. Producers publish straight to the stream
 * (the NATS ingest path), including duplicates across messages.
 */
describe('processor crash mid-stream', () => {
  let nats: NatsServerHandle;
  let nc: NatsConnection;
  let ml: MeterlineProcess;

  beforeAll(async () => {
    nats = await startTestNats();
    nc = await connect({ servers: nats.url });
    ml = new MeterlineProcess({ NATS_URL: nats.url, CLICKHOUSE_DATABASE: randomDatabase(), CLICKHOUSE_DATA_DIR: tempDir('meterline-child-ch-') }, tempDir('meterline-child-'));
    await ml.start();
  }, 120_000);
  afterAll(async () => {
    await ml?.kill();
    await nc?.close();
    await nats?.stop();
  });

  it('keeps every total exact across two SIGKILLs', async () => {
    expect((await ml.post('/api/v1/meters', { slug: 'bytes', eventType: 'upload', aggregation: 'SUM', valueProperty: '$.bytes' })).status).toBe(201);
    expect((await ml.post('/api/v1/meters', { slug: 'uploads', eventType: 'upload', aggregation: 'COUNT' })).status).toBe(201);
    // Stop the processor so the whole stream is waiting when it comes back.
    await ml.kill();

    const js = jetstream(nc);
    const customers = ['c0', 'c1', 'c2', 'c3', 'c4'];
    const expected = new Map(customers.map((c) => [c, { count: 0, bytes: new Decimal(0) }]));
    const messages = 100;
    const perMessage = 1000;
    let n = 0;
    for (let m = 0; m < messages; m++) {
      const batch = [];
      for (let i = 0; i < perMessage; i++) {
        // Every 10th event repeats an original event of the previous message: a duplicate across messages.
        const dup = m > 0 && i % 10 === 0;
        const k = dup ? (m - 1) * perMessage + i + 1 : m * perMessage + i;
        const id = `e-${k}`;
        const subject = customers[k % customers.length]!;
        const bytes = `${k % 997}.${k % 10}`;
        batch.push({ specversion: '1.0', id, source: 'crash-test', type: 'upload', subject, time: new Date(Date.UTC(2026, 10, 1) + k * 1000).toISOString(), data: { bytes } });
        if (!dup) {
          const x = expected.get(subject)!;
          x.count++;
          x.bytes = x.bytes.plus(bytes);
          n++;
        }
      }
      await js.publish('meterline.events.direct', JSON.stringify(batch));
    }
    expect(n).toBe(messages * perMessage - (messages - 1) * (perMessage / 10));
    // The kills below must land mid-stream: the stream holds far more than one poll's worth.

    const counted = async () => {
      const r = await ml.api<{ data: { value: string }[] }>('/api/v1/meters/uploads/query');
      return Number(r.data[0]?.value ?? 0);
    };
    for (let round = 0; round < 2; round++) {
      await ml.start();
      // Kill while the stream is being processed: some, not all, events counted.
      const seen = await eventually(counted, (v) => v > 0, 60_000);
      await ml.kill('SIGKILL');
      expect(seen).toBeLessThan(n);
    }
    await ml.start();
    await eventually(counted, (v) => v >= n, 120_000);

    const q = await ml.api<{ data: { subject: string; value: string }[] }>('/api/v1/meters/bytes/query?groupBy=subject');
    const c = await ml.api<{ data: { subject: string; value: string }[] }>('/api/v1/meters/uploads/query?groupBy=subject');
    for (const subject of customers) {
      expect(c.data.find((d) => d.subject === subject)?.value, subject).toBe(String(expected.get(subject)!.count));
      expect(q.data.find((d) => d.subject === subject)?.value, subject).toBe(expected.get(subject)!.bytes.toFixed());
    }
    const rec = await ml.api<{ ok: boolean }>('/api/v1/reconcile?from=2026-10-31T00:00:00Z&to=2026-11-05T00:00:00Z');
    expect(rec.ok).toBe(true);
  }, 300_000);
});
