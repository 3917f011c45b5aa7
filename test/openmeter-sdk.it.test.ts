import { HTTPError, OpenMeter } from '@openmeter/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { eventually, startTestNats, startTestRuntime, testConfig, type TestRuntime } from './harness.ts';

const HOUR = 3_600_000;

/**
 * The official OpenMeter SDK, unchanged, against Meterline on a real port: existing producers
 * switch by changing `baseUrl` and `apiKey`.
 */
describe('OpenMeter SDK compatibility', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;
  let openmeter: OpenMeter;
  // Two full hours in the past: [h0, h0 + 1h) and [h0 + 1h, h0 + 2h).
  const h0 = Math.floor(Date.now() / HOUR) * HOUR - 2 * HOUR;
  const at = (minutes: number) => new Date(h0 + minutes * 60_000);

  beforeAll(async () => {
    nats = await startTestNats();
    rt = await startTestRuntime(testConfig(nats.url));
    expect(rt.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    openmeter = new OpenMeter({ baseUrl: rt.url!, apiKey: rt.adminKey });
  });
  afterAll(async () => {
    await rt?.stop();
    await nats?.stop();
  });

  /** Rows as plain values: the SDK turns ISO strings into Date objects; values are exact decimal strings. */
  const rows = (r: Awaited<ReturnType<OpenMeter['meters']['query']>>) =>
    (r?.data ?? [])
      .map((d) => ({ value: String(d.value), windowStart: new Date(d.windowStart).toISOString(), subject: d.subject, groupBy: d.groupBy }))
      .sort((a, b) => a.windowStart.localeCompare(b.windowStart) || JSON.stringify(a.groupBy).localeCompare(JSON.stringify(b.groupBy)) || String(a.subject).localeCompare(String(b.subject)));

  it('creates, lists and gets meters', async () => {
    const created = await openmeter.meters.create({
      slug: 'tokens',
      name: 'AI tokens',
      aggregation: 'SUM',
      eventType: 'ai-tokens',
      valueProperty: '$.tokens',
      groupBy: { model: '$.model', type: '$.type' },
    });
    expect(created).toMatchObject({ slug: 'tokens', aggregation: 'SUM', eventType: 'ai-tokens', groupBy: { model: '$.model', type: '$.type' } });
    await openmeter.meters.create({ slug: 'requests', aggregation: 'COUNT', eventType: 'ai-tokens' });
    expect((await openmeter.meters.list())?.map((m) => m.slug)).toEqual(['requests', 'tokens']);
    const got = await openmeter.meters.get('tokens');
    expect(got).toMatchObject({ slug: 'tokens', valueProperty: '$.tokens' });
    expect(got?.createdAt).toBeInstanceOf(Date);
  });

  it('ingests a single event and a batch, and queries them back by hour, subject and group', async () => {
    // One event, every attribute given.
    await openmeter.events.ingest({
      id: 'evt-single-1',
      source: 'llm-gateway',
      type: 'ai-tokens',
      subject: 'customer-acme',
      time: at(5),
      data: { model: 'gpt-4', type: 'input', tokens: 1250 },
    });
    // A batch with the SDK's defaults (id, source, specversion) and exact decimals.
    await openmeter.events.ingest([
      { type: 'ai-tokens', subject: 'customer-acme', time: at(10), data: { model: 'gpt-4', type: 'output', tokens: 850 } },
      { type: 'ai-tokens', subject: 'customer-acme', time: at(20), data: { model: 'gpt-4', type: 'input', tokens: 0.1 } },
      { type: 'ai-tokens', subject: 'customer-acme', time: at(30), data: { model: 'gpt-4', type: 'input', tokens: 0.2 } },
      { type: 'ai-tokens', subject: 'customer-acme', time: at(70), data: { model: 'gpt-3.5', type: 'input', tokens: '12345678901234567890.123456789' } },
      { type: 'ai-tokens', subject: 'customer-globex', time: at(75), data: { model: 'gpt-4', type: 'input', tokens: 7 } },
    ]);
    // The SDK retries nothing by itself; a resent event (same id and source) is counted once.
    await openmeter.events.ingest({ id: 'evt-single-1', source: 'llm-gateway', type: 'ai-tokens', subject: 'customer-acme', time: at(5), data: { model: 'gpt-4', type: 'input', tokens: 1250 } });

    const from = new Date(h0);
    const to = new Date(h0 + 2 * HOUR);
    await eventually(
      async () => (await openmeter.meters.query('requests', { from, to, subject: ['customer-acme', 'customer-globex'] }))?.data[0]?.value,
      (v) => String(v) === '6',
    );

    const byHourAndModel = await openmeter.meters.query('tokens', { from, to, windowSize: 'HOUR', groupBy: ['model'], subject: ['customer-acme'] });
    expect(byHourAndModel).toMatchObject({ from, to, windowSize: 'HOUR' });
    expect(rows(byHourAndModel)).toEqual([
      { value: '2100.3', windowStart: new Date(h0).toISOString(), subject: 'customer-acme', groupBy: { model: 'gpt-4' } },
      { value: '12345678901234567890.123456789', windowStart: new Date(h0 + HOUR).toISOString(), subject: 'customer-acme', groupBy: { model: 'gpt-3.5' } },
    ]);
    expect(byHourAndModel!.data[0]!.windowStart).toBeInstanceOf(Date);
    expect(new Date(byHourAndModel!.data[0]!.windowEnd).getTime()).toBe(h0 + HOUR);

    const bySubject = await openmeter.meters.query('tokens', { from, to, groupBy: ['subject', 'type'] });
    expect(rows(bySubject).map(({ subject, groupBy, value }) => ({ subject, groupBy, value }))).toEqual(
      expect.arrayContaining([
        { subject: 'customer-acme', groupBy: { type: 'input' }, value: '12345678901234569140.423456789' },
        { subject: 'customer-acme', groupBy: { type: 'output' }, value: '850' },
        { subject: 'customer-globex', groupBy: { type: 'input' }, value: '7' },
      ]),
    );
    expect(bySubject!.data).toHaveLength(3);

    const filtered = await openmeter.meters.query('tokens', { from, to, filterGroupBy: { model: 'gpt-4' }, subject: ['customer-acme', 'customer-globex'] });
    expect(rows(filtered).map((r) => r.value)).toEqual(['2107.3']);

    // Events without a time get the SDK's default (now) and land in the current hour.
    await openmeter.events.ingest({ type: 'ai-tokens', subject: 'customer-now', data: { model: 'gpt-4', type: 'input', tokens: 3 } });
    const nowQuery = () => openmeter.meters.query('tokens', { from: new Date(Math.floor(Date.now() / HOUR) * HOUR - HOUR), to: new Date(Math.ceil((Date.now() + 1) / HOUR) * HOUR), subject: ['customer-now'] });
    await eventually(async () => (await nowQuery())?.data[0]?.value, (v) => String(v) === '3');
  });

  it('a meter created after its events arrived counts them (backfill)', async () => {
    await openmeter.events.ingest([
      { type: 'api-calls', subject: 'customer-acme', time: at(40), data: { route: '/a', ms: 12 } },
      { type: 'api-calls', subject: 'customer-acme', time: at(41), data: { route: '/b', ms: 30 } },
    ]);
    // Wait until both events are stored (a meter that already counts the type proves it).
    await openmeter.meters.create({ slug: 'api-calls-seen', aggregation: 'COUNT', eventType: 'api-calls' });
    await eventually(async () => (await openmeter.meters.query('api-calls-seen', { subject: ['customer-acme'] }))?.data[0]?.value, (v) => String(v) === '2');

    await openmeter.meters.create({ slug: 'api-latency', aggregation: 'SUM', eventType: 'api-calls', valueProperty: '$.ms', groupBy: { route: '$.route' } });
    const q = await eventually(
      () => openmeter.meters.query('api-latency', { from: new Date(h0), to: new Date(h0 + HOUR), groupBy: ['route'] }),
      (r) => (r?.data.length ?? 0) === 2,
      10_000,
    );
    expect(rows(q).map((r) => [r.groupBy.route, r.value])).toEqual([
      ['/a', '12'],
      ['/b', '30'],
    ]);
  });

  it('errors reach the SDK as HTTPError with the status and Meterline\'s reason', async () => {
    const bad = await openmeter.events.ingest([{ type: 'ai-tokens', subject: '', data: { tokens: 1 } }]).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(bad).toBeInstanceOf(HTTPError);
    const err = bad as HTTPError;
    expect(err.status).toBe(400);
    expect(err.message).toMatch(/subject must not be empty/);
    expect(err.getField('code')).toBe('INGEST_INVALID_EVENTS');
    expect(err.getField('errors')).toEqual([{ index: 0, id: expect.any(String), field: 'subject', reason: 'subject must not be empty' }]);

    const wrongKey = new OpenMeter({ baseUrl: rt.url!, apiKey: 'om_not_a_meterline_key' });
    const denied = await wrongKey.meters.list().then(
      () => undefined,
      (e: unknown) => e as HTTPError,
    );
    expect(denied?.status).toBe(401);
    const ingestOnly = new OpenMeter({ baseUrl: rt.url!, apiKey: await rt.key('ingest') });
    await ingestOnly.events.ingest({ type: 'ai-tokens', subject: 'customer-ingest-only', data: { model: 'gpt-4', type: 'input', tokens: 1 } });
    const forbidden = await ingestOnly.meters.query('tokens').then(
      () => undefined,
      (e: unknown) => e as HTTPError,
    );
    expect(forbidden?.status).toBe(403);
    expect(forbidden?.message).toMatch(/"read" scope/);

    const missing = await openmeter.meters.query('no-such-meter').then(
      () => undefined,
      (e: unknown) => e as HTTPError,
    );
    expect(missing?.status).toBe(404);
    expect(missing?.getField('code')).toBe('METER_NOT_FOUND');
  });
});
