import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Decimal as D } from 'decimal.js';

const Decimal = D.clone({ precision: 60 });
type Decimal = InstanceType<typeof Decimal>;
import type { NatsServerHandle } from '../common/nats-server.ts';
import { client } from './api-client.ts';
import { eventually, startTestNats, startTestRuntime, testConfig, type TestRuntime } from './harness.ts';

/**
 * Numbers keep every digit, and the way they were written, from the producer's text to the
 * rollups, whichever way the events arrive: an HTTP batch cut into one message per partition,
 * or a batch published straight onto NATS and moved onto partitions by the router.
 */
describe('exact numbers across partitions', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;
  let c: ReturnType<typeof client>;
  const BIG = '12345678901234567890.123456789';

  beforeAll(async () => {
    nats = await startTestNats();
    rt = await startTestRuntime(testConfig(nats.url, { EVENT_PARTITIONS: '8' }));
    c = client(rt.app!, rt.adminKey);
    await c.createMeter({ slug: 'tokens', eventType: 'llm', aggregation: 'SUM', valueProperty: '$.tokens', groupBy: { tier: '$.tier' } });
  });
  afterAll(async () => {
    await rt?.stop();
    await nats?.stop();
  });

  // Written by hand, as a producer's JSON library would: numbers, not strings.
  const batch = (subject: string, n: number) =>
    `[${Array.from({ length: n }, (_, i) => `{"specversion":"1.0","source":"exact","id":"${subject}-${i}","type":"llm","subject":"${subject}","time":"2026-11-01T10:00:00Z","data":{"tokens":${i % 2 ? BIG : '0.5'},"tier":${i % 3 ? '1.50' : '2'}}}`).join(',\n')}]`;

  const expectExact = async (subject: string, n: number) => {
    const want = new Map<string, Decimal>();
    for (let i = 0; i < n; i++) {
      const tier = i % 3 ? '1.50' : '2';
      want.set(tier, (want.get(tier) ?? new Decimal(0)).plus(i % 2 ? BIG : '0.5'));
    }
    const got = await eventually(
      async () => (await c.query('tokens', { subject, groupBy: 'tier' })).data,
      (rows) => rows.length === want.size && rows.every((r) => r.value === want.get(r.groupBy.tier ?? "")?.toFixed()),
    );
    expect(Object.fromEntries(got.map((r) => [r.groupBy.tier, r.value]))).toEqual(Object.fromEntries([...want].map(([k, v]) => [k, v.toFixed()])));
  };

  it('an HTTP batch spanning every partition', async () => {
    const r = await c.ingest(batch('http', 60));
    expect(r.statusCode, r.body).toBe(202);
    await expectExact('http', 60);
  });

  it('a batch published straight onto NATS, through the router', async () => {
    await rt.nats.js.publish(rt.nats.eventSubject('direct'), batch('nats', 60));
    await expectExact('nats', 60);
  });
});
