import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { client, total } from './api-client.ts';
import { ce, eventually, startTestNats, startTestRuntime, testConfig, type TestRuntime } from './harness.ts';

/**
 * A customer's events stop: the scan raises a gap, a webhook receiver on localhost gets one
 * correctly signed alert (not one per scan), a Slack-format webhook gets its message, and
 * resolving the anomaly over the API closes it for good.
 */
const HOUR = 3_600_000;
const H0 = Date.UTC(2026, 8, 1); // four weeks and more of history before the gap
const HISTORY_HOURS = 28 * 24 + 30;
const GAP_START = H0 + HISTORY_HOURS * HOUR;

interface Received {
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}

describe('anomaly detection end to end', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;
  let c: ReturnType<typeof client>;
  let receiver: Server;
  let receiverUrl = '';
  const received: Received[] = [];

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (b: Buffer) => (body += b.toString()));
      req.on('end', () => {
        received.push({ path: req.url ?? '', headers: req.headers, body });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
    receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    nats = await startTestNats();
    rt = await startTestRuntime(testConfig(nats.url, { INGEST_MAX_PAST: '400d', ANOMALY_SCHEDULE: '0 0 1 1 *', BILLING_SCHEDULE: '0 0 1 1 *' }));
    c = client(rt.app!, rt.adminKey);
    await c.createMeter({ slug: 'api-calls', name: 'API calls', eventType: 'call', aggregation: 'COUNT' });
    // Hourly traffic with a daily shape (busier in the day), for four weeks and a bit; then silence.
    const events = [];
    for (let h = 0; h < HISTORY_HOURS; h++) {
      const hourOfDay = new Date(H0 + h * HOUR).getUTCHours();
      const n = hourOfDay >= 8 && hourOfDay < 20 ? 30 : 12;
      for (let i = 0; i < n; i++) events.push(ce({ id: `h${h}-${i}`, type: 'call', subject: 'acme', time: new Date(H0 + h * HOUR + i * 60_000).toISOString() }));
    }
    for (let i = 0; i < events.length; i += 5_000) expect((await c.ingest(events.slice(i, i + 5_000))).statusCode).toBe(202);
    await eventually(() => total(c, 'api-calls', 'acme'), (v) => v === String(events.length), 60_000);
  }, 120_000);
  afterAll(async () => {
    await rt?.stop();
    await nats?.stop();
    await new Promise((r) => receiver?.close(r));
  });

  it('raises a gap once, signed, and resolving it closes it', async () => {
    const hook = await c.post('/api/v1/webhooks', { url: `${receiverUrl}/hooks/meterline`, format: 'json' });
    expect(hook.statusCode).toBe(201);
    const { secret, id: hookId } = hook.json() as { secret: string; id: string };
    expect((await c.post('/api/v1/webhooks', { url: `${receiverUrl}/hooks/slack`, format: 'slack', kinds: ['gap'] })).statusCode).toBe(201);

    // Every alert is also published on NATS for other consumers.
    const onNats: string[] = [];
    const sub = rt.nats.nc.subscribe('meterline.alerts.>', { callback: (_err, msg) => void onNats.push(msg.subject) });

    // Before the gap: nothing.
    const quiet = await rt.scanner!.scan(GAP_START + 10 * 60_000);
    expect(quiet).toMatchObject({ ran: true, opened: 0 });
    // Five silent hours later: a gap.
    const now = GAP_START + 5 * HOUR + 10 * 60_000;
    const first = await rt.scanner!.scan(now);
    expect(first.opened).toBe(1);
    await rt.alerts!.idle();
    const list = (await c.get('/api/v1/anomalies?customer=acme&status=open')).json() as { items: { id: string; kind: string; meter: string; message: string; severity: string; baseline: number }[] };
    expect(list.items).toHaveLength(1);
    const gap = list.items[0]!;
    expect(gap).toMatchObject({ kind: 'gap', meter: 'api-calls' });
    expect(gap.message).toMatch(/No API calls for \d+ hours/);

    const json = received.filter((r) => r.path === '/hooks/meterline');
    expect(json).toHaveLength(1);
    const sig = String(json[0]!.headers['meterline-signature']);
    const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(sig);
    expect(m).not.toBeNull();
    const expectedMac = createHmac('sha256', secret).update(`${m![1]}.${json[0]!.body}`).digest('hex');
    expect(timingSafeEqual(Buffer.from(expectedMac), Buffer.from(m![2]!))).toBe(true);
    expect(JSON.parse(json[0]!.body)).toMatchObject({ type: 'anomaly.opened', anomaly: { id: gap.id, kind: 'gap', customer: 'acme' } });
    await rt.nats.nc.flush();
    expect(onNats).toEqual(['meterline.alerts.gap']);
    sub.unsubscribe();
    const slack = received.filter((r) => r.path === '/hooks/slack');
    expect(slack).toHaveLength(1);
    expect((JSON.parse(slack[0]!.body) as { text: string }).text).toContain('No API calls');

    // Scanning again while the gap goes on updates the anomaly; no second alert.
    const again = await rt.scanner!.scan(now + 5 * 60_000);
    expect(again).toMatchObject({ opened: 0, updated: 1 });
    await rt.alerts!.idle();
    expect(received.filter((r) => r.path === '/hooks/meterline')).toHaveLength(1);
    expect(((await c.get(`/api/v1/anomalies/${gap.id}`)).json() as { detections: number }).detections).toBe(2);

    // The delivery log records the attempt.
    const log = (await c.get(`/api/v1/webhooks/${hookId}/deliveries`)).json() as { items: { anomalyId: string; ok: boolean; httpStatus: number }[] };
    expect(log.items).toEqual([expect.objectContaining({ anomalyId: gap.id, ok: true, httpStatus: 204 })]);

    // Resolve: closed, and the same episode does not reopen on the next scan.
    const res = await c.post(`/api/v1/anomalies/${gap.id}/resolve`, { note: 'customer rotated their API key; fixed' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ status: 'resolved', resolutionNote: 'customer rotated their API key; fixed' });
    await rt.scanner!.scan(now + 10 * 60_000);
    await rt.alerts!.idle();
    expect(((await c.get('/api/v1/anomalies?customer=acme&status=open')).json() as { items: unknown[] }).items).toEqual([]);
    expect(received.filter((r) => r.path === '/hooks/meterline')).toHaveLength(1);
  });

  it('a read key can list anomalies but not resolve them', async () => {
    const read = client(rt.app!, await rt.key('read'));
    expect((await read.get('/api/v1/anomalies')).statusCode).toBe(200);
    const [a] = ((await read.get('/api/v1/anomalies')).json() as { items: { id: string }[] }).items;
    expect((await read.post(`/api/v1/anomalies/${a!.id}/acknowledge`)).statusCode).toBe(403);
  });

  it('thresholds alert at 80 % and escalate at 100 % of a cap, once each', async () => {
    const t = await c.post('/api/v1/thresholds', { customer: 'acme', meter: 'api-calls', cap: '100', percents: [80, 100] });
    expect(t.statusCode).toBe(201);
    // Usage this month (UTC) for acme: send 85 calls now.
    const now = Date.now();
    const batch = Array.from({ length: 85 }, (_, i) => ce({ id: `cap-${i}`, type: 'call', subject: 'acme', time: new Date(now - 60_000 - i * 1000).toISOString() }));
    await c.ingest(batch);
    const monthStart = new Date(Date.UTC(new Date(now).getUTCFullYear(), new Date(now).getUTCMonth(), 1)).toISOString();
    await eventually(() => total(c, 'api-calls', 'acme', { from: monthStart }), (v) => v === '85');
    const before = received.length;
    await rt.scanner!.scan(now);
    await rt.scanner!.scan(now + 1000);
    await rt.alerts!.idle();
    const th = ((await c.get('/api/v1/anomalies?customer=acme&kind=threshold')).json() as { items: { severity: string; message: string }[] }).items;
    expect(th).toHaveLength(1);
    expect(th[0]).toMatchObject({ severity: 'warning' });
    expect(th[0]!.message).toContain('85 of 100');
    expect(received.slice(before).filter((r) => r.path === '/hooks/meterline')).toHaveLength(1);
    await c.ingest(Array.from({ length: 20 }, (_, i) => ce({ id: `cap2-${i}`, type: 'call', subject: 'acme', time: new Date(now - 30_000 - i * 1000).toISOString() })));
    await eventually(() => total(c, 'api-calls', 'acme', { from: monthStart }), (v) => v === '105');
    await rt.scanner!.scan(now + 2000);
    await rt.alerts!.idle();
    const th2 = ((await c.get('/api/v1/anomalies?customer=acme&kind=threshold')).json() as { items: { severity: string; detail: { alerted: number[] } }[] }).items;
    expect(th2).toHaveLength(1);
    expect(th2[0]).toMatchObject({ severity: 'critical', detail: { alerted: [80, 100] } });
    const events = received.slice(before).filter((r) => r.path === '/hooks/meterline').map((r) => (JSON.parse(r.body) as { type: string }).type);
    expect(events).toEqual(['anomaly.opened', 'anomaly.escalated']);
  });
});
