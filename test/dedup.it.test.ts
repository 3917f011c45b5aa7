import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { client, total } from './api-client.ts';
import { ce, eventually, startTestNats, startTestRuntime, testConfig, type TestRuntime } from './harness.ts';

describe('exactly once: duplicates are counted once', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;
  let c: ReturnType<typeof client>;

  beforeAll(async () => {
    nats = await startTestNats();
    rt = await startTestRuntime(testConfig(nats.url));
    c = client(rt.app!, rt.adminKey);
    await c.createMeter({ slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens' });
    await c.createMeter({ slug: 'calls', eventType: 'llm', aggregation: 'COUNT' });
  });
  afterAll(async () => {
    await rt?.stop();
    await nats?.stop();
  });

  const ev = (id: string, subject: string, tokens: number | string) => ce({ id, type: 'llm', subject, time: '2026-11-01T10:00:00Z', data: { tokens } });

  it('the same event twice in one batch', async () => {
    const r = await c.ingest([ev('a1', 'one-batch', 5), ev('a1', 'one-batch', 5), ev('a2', 'one-batch', 7)]);
    expect(r.statusCode).toBe(202);
    const v = await eventually(() => total(c, 'tokens', 'one-batch'), (x) => x === '12');
    expect(v).toBe('12');
    expect(await total(c, 'calls', 'one-batch')).toBe('2');
  });

  it('the same event in two batches', async () => {
    expect((await c.ingest([ev('b1', 'two-batches', 3), ev('b2', 'two-batches', 4)])).statusCode).toBe(202);
    expect((await c.ingest([ev('b2', 'two-batches', 4), ev('b3', 'two-batches', 10)])).statusCode).toBe(202);
    await eventually(() => total(c, 'calls', 'two-batches'), (x) => x === '3');
    expect(await total(c, 'tokens', 'two-batches')).toBe('17');
  });

  it('a retried request with the same Idempotency-Key is stored once', async () => {
    const batch = [ev('c1', 'retry', '1.25'), ev('c2', 'retry', '2.5')];
    const first = await c.ingest(batch, { 'idempotency-key': 'req-42' });
    const retry = await c.ingest(batch, { 'idempotency-key': 'req-42' });
    expect(first.json()).toMatchObject({ accepted: 2, duplicate: false });
    expect(retry.json()).toMatchObject({ accepted: 2, duplicate: true });
    await eventually(() => total(c, 'tokens', 'retry'), (x) => x === '3.75');
    const info = await rt.nats.jsm.streams.info(rt.config.NATS_STREAM);
    // The retried batch was not stored again in the stream either.
    const seqs = info.state.messages;
    await c.ingest(batch, { 'idempotency-key': 'req-42' });
    expect((await rt.nats.jsm.streams.info(rt.config.NATS_STREAM)).state.messages).toBe(seqs);
  });

  it('the same event with a different Idempotency-Key (a new request) is still counted once', async () => {
    await c.ingest([ev('d1', 'new-request', 100)], { 'idempotency-key': 'k1' });
    await c.ingest([ev('d1', 'new-request', 100)], { 'idempotency-key': 'k2' });
    await c.ingest([ev('d2', 'new-request', 1)], { 'idempotency-key': 'k3' });
    await eventually(() => total(c, 'calls', 'new-request'), (x) => x === '2');
    expect(await total(c, 'tokens', 'new-request')).toBe('101');
  });

  it('same id from a different source is a different event', async () => {
    await c.ingest([ev('e1', 'sources', 1), { ...ev('e1', 'sources', 2), source: 'other' }]);
    await eventually(() => total(c, 'tokens', 'sources'), (x) => x === '3');
  });

  it('a processor restart reloads the dedup index from ClickHouse', async () => {
    await c.ingest([ev('f1', 'restart', 9)]);
    await eventually(() => total(c, 'tokens', 'restart'), (x) => x === '9');
    // Start a fresh processor over the same stream and database: its memory is empty.
    await rt.stop();
    rt = await startTestRuntime(rt.config);
    c = client(rt.app!, rt.adminKey);
    await c.ingest([ev('f1', 'restart', 9), ev('f2', 'restart', 1)]);
    await eventually(() => total(c, 'calls', 'restart'), (x) => x === '2');
    expect(await total(c, 'tokens', 'restart')).toBe('10');
  });
});
