import type { FastifyInstance, HTTPMethods } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { isValidTimeZone, USAGE_QUERY_LIMITS } from '../usage/index.ts';
import { client, total } from './api-client.ts';
import { ce, eventually, startTestNats, startTestRuntime, testConfig, type TestRuntime } from './harness.ts';

/**
 * Hostile and careless input to the API, as a user sends it: CSV exports that a spreadsheet
 * would run as formulas, time zones Node or ClickHouse does not know (a 400 naming the
 * parameter, never a 500), and usage queries past their documented limits (a 4xx saying how
 * to narrow them, before ClickHouse does the work where it can).
 */
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const SEP = Date.UTC(2026, 8, 1);
const D0 = Date.UTC(2026, 9, 31); // US DST ends 2026-11-01: a day window in New York is 25 hours

/** A customer key a spreadsheet would run as a formula (OWASP's example), and a plan name that would be a link. */
const EVIL_CUSTOMER = "-1+cmd|' /C calc'!A0";
const EVIL_PLAN = '=HYPERLINK("http://evil.example","x")';

interface Problem {
  code: string;
  message: string;
  errors?: { field: string; reason: string }[];
  limit?: Record<string, number>;
}

describe('API hardening: CSV injection, time zones, usage query limits', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;
  let app: FastifyInstance;
  let c: ReturnType<typeof client>;
  let portalToken = '';

  beforeAll(async () => {
    nats = await startTestNats();
    rt = await startTestRuntime(testConfig(nats.url, { INGEST_MAX_PAST: '400d', BILLING_SCHEDULE: '0 0 1 1 *', ANOMALY_SCHEDULE: '0 0 1 1 *' }));
    app = rt.app!;
    await app.ready();
    c = client(app, rt.adminKey);
    await c.createMeter({ slug: 'calls', eventType: 'call', aggregation: 'COUNT', groupBy: { region: '$.region' } });
    const post = async (url: string, body: unknown) => {
      const r = await c.post(url, body);
      expect(r.statusCode, `${url}: ${r.body}`).toBeLessThan(300);
      return r.json() as Record<string, unknown>;
    };
    await post('/api/v1/customers', { key: 'acme', name: 'Acme', currency: 'USD', timeZone: 'America/New_York' });
    await post('/api/v1/customers', { key: EVIL_CUSTOMER, name: 'Evil', currency: 'USD', timeZone: 'UTC' });
    await post('/api/v1/plans', { key: 'evil', name: EVIL_PLAN, currency: 'USD', interval: 'month', baseFee: { amount: '30', timing: 'advance' }, charges: [{ key: 'calls', meter: 'calls', description: '@SUM(1+1)', price: { model: 'per_unit', unitPrice: '0.10' } }] });
    await post('/api/v1/plans', { key: 'big', name: 'Big', currency: 'USD', interval: 'month', baseFee: { amount: '60', timing: 'advance' } });
    await post('/api/v1/subscriptions', { id: 'sub-evil', customer: EVIL_CUSTOMER, plan: 'evil', start: new Date(SEP).toISOString() });
    // An upgrade half way through September: the advance fee of the first plan is credited (-15.00).
    await post('/api/v1/subscriptions/sub-evil/change-plan', { plan: 'big', effectiveAt: new Date(SEP + 15 * DAY).toISOString() });
    portalToken = ((await post('/api/v1/portal-tokens', { customer: 'acme' })) as { token: string }).token;

    // acme: one call every 3 hours over three days around the DST change; the evil customer: 4 calls in September.
    const events = [
      ...Array.from({ length: 24 }, (_, i) => ce({ id: `a${i}`, type: 'call', subject: 'acme', time: new Date(D0 + i * 3 * HOUR + 60_000).toISOString(), data: { region: i % 2 ? 'eu' : 'us' } })),
      ...Array.from({ length: 4 }, (_, i) => ce({ id: `e${i}`, type: 'call', subject: EVIL_CUSTOMER, time: new Date(SEP + i * DAY).toISOString(), data: { region: 'eu' } })),
    ];
    expect((await c.ingest(events)).statusCode).toBe(202);
    await eventually(async () => [await total(c, 'calls', 'acme'), await total(c, 'calls', EVIL_CUSTOMER)].join(), (v) => v === '24,4');
  }, 120_000);
  afterAll(async () => {
    await rt?.stop();
    await nats?.stop();
  });

  const call = (method: HTTPMethods, url: string, token: string, body?: unknown) =>
    app.inject({ method, url, headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { payload: JSON.stringify(body) }) });
  const usage = (params: Record<string, string>, meter = 'calls') => call('GET', `/api/v1/meters/${meter}/query?${new URLSearchParams(params)}`, rt.adminKey);
  const range = { from: new Date(D0).toISOString(), to: new Date(D0 + 3 * DAY).toISOString() };

  describe('CSV exports', () => {
    it('an invoice CSV quotes every formula-like text cell and leaves negative amounts as numbers', async () => {
      const close = await c.post('/api/v1/billing/close', { period: '2026-09', customer: EVIL_CUSTOMER });
      expect(close.statusCode, close.body).toBe(200);
      const r = await c.get(`/api/v1/invoices?format=csv&customer=${encodeURIComponent(EVIL_CUSTOMER)}`);
      expect(r.statusCode, r.body).toBe(200);
      expect(r.headers['content-type']).toMatch(/^text\/csv/);
      const [header, ...lines] = r.body.trimEnd().split('\r\n');
      expect(header).toBe('invoice_id,number,status,customer,currency,period_start,period_end,line_id,kind,meter,description,line_period_start,line_period_end,quantity,unit_price,amount,breakdown');
      expect(lines.length).toBeGreaterThan(0);
      // No cell (quoted or not) starts with a formula character, unless it is a plain decimal number.
      for (const line of lines) {
        for (const cell of splitCsv(line)) {
          if (/^-?\d+(\.\d+)?$/.test(cell)) continue;
          expect(cell, line).not.toMatch(/^[=+\-@\t\r]/);
        }
      }
      const cells = lines.map(splitCsv);
      expect(cells.every((l) => l[3] === `'${EVIL_CUSTOMER}`)).toBe(true);
      expect(cells.some((l) => l[10]!.startsWith(`'${EVIL_PLAN}`))).toBe(true);
      // The credit for the unused half of the first plan's advance fee: a negative number, as is.
      expect(cells.map((l) => l[15])).toContain('-15.00');
    });
  });

  describe('time zones', () => {
    it('ClickHouse knows the zones Node knows; the API takes exactly the zones both know, and refuses the others with a 400', async () => {
      const rs = await rt.store!.ch.query({ query: 'SELECT count() AS n FROM system.time_zones', format: 'JSONEachRow' });
      const n = (await rs.json<{ n: string }>())[0]?.n;
      const names = new Set((await (await rt.store!.ch.query({ query: 'SELECT time_zone FROM system.time_zones', format: 'JSONEachRow' })).json<{ time_zone: string }>()).map((r) => r.time_zone));
      expect(names.size).toBe(Number(n));
      const intl = Intl.supportedValuesOf('timeZone');
      const unknownToClickHouse = intl.filter((z) => !names.has(z));
      // Nearly every zone Node knows is known to ClickHouse (the difference: zones newer than one tz database).
      expect(unknownToClickHouse.length, unknownToClickHouse.join(', ')).toBeLessThan(10);
      for (const z of intl) expect(isValidTimeZone(z), z).toBe(names.has(z));
      for (const z of [...unknownToClickHouse, 'UTC', 'Etc/UTC', 'Asia/Kolkata', 'US/Eastern']) {
        const r = await usage({ ...range, windowSize: 'DAY', windowTimeZone: z });
        expect(r.statusCode, `${z}: ${r.body}`).toBe(names.has(z) ? 200 : 400);
      }
    });

    it('an unknown zone is a 400 naming the parameter, on the usage query, the portal query and customers', async () => {
      for (const windowTimeZone of ['Mars/Base', 'Europe/Berlin/x', '+01:00', '']) {
        const r = await usage({ ...range, windowSize: 'DAY', windowTimeZone });
        expect(r.statusCode, r.body).toBe(400);
        const p = r.json() as Problem;
        expect(p.code).toBe('REQUEST_INVALID');
        expect(p.errors).toEqual([{ field: 'query.windowTimeZone', reason: `unknown time zone '${windowTimeZone}'; use an IANA name such as Europe/Berlin` }]);
        expect(p.message).toContain('query.windowTimeZone');
      }
      const portal = await call('GET', `/api/v1/portal/meters/calls/query?${new URLSearchParams({ ...range, windowSize: 'DAY', windowTimeZone: 'Mars/Base' })}`, portalToken);
      expect(portal.statusCode, portal.body).toBe(400);
      expect((portal.json() as Problem).errors).toEqual([{ field: 'query.windowTimeZone', reason: "unknown time zone 'Mars/Base'; use an IANA name such as Europe/Berlin" }]);

      const created = await c.post('/api/v1/customers', { key: 'mars', name: 'Mars', currency: 'USD', timeZone: 'Mars/Base' });
      expect(created.statusCode, created.body).toBe(400);
      expect((created.json() as Problem).errors).toEqual([{ field: 'body.timeZone', reason: "unknown time zone 'Mars/Base'; use an IANA name such as Europe/Berlin" }]);
      const put = await call('PUT', '/api/v1/customers/acme', rt.adminKey, { name: 'Acme', currency: 'USD', timeZone: 'Mars/Base' });
      expect(put.statusCode, put.body).toBe(400);
      expect((put.json() as Problem).errors?.[0]?.field).toBe('body.timeZone');
    });

    it('a zone in any case is its canonical name: the same answer, and customers store the canonical spelling', async () => {
      const canonical = await usage({ ...range, windowSize: 'DAY', windowTimeZone: 'America/New_York' });
      expect(canonical.statusCode, canonical.body).toBe(200);
      const body = canonical.json() as { data: { value: string; windowStart: string }[] };
      // Local days in New York (UTC-4, then UTC-5 from November 1): the first call, at midnight UTC, is on October 30 there.
      expect(body.data.map((d) => d.windowStart)).toEqual(['2026-10-30T04:00:00Z', '2026-10-31T04:00:00Z', '2026-11-01T04:00:00Z', '2026-11-02T05:00:00Z']);
      for (const tz of ['america/new_york', 'AMERICA/NEW_YORK']) {
        const r = await usage({ ...range, windowSize: 'DAY', windowTimeZone: tz });
        expect(r.statusCode, r.body).toBe(200);
        expect(r.json()).toEqual(body);
      }
      const portalCanonical = await call('GET', `/api/v1/portal/meters/calls/query?${new URLSearchParams({ ...range, windowSize: 'DAY', windowTimeZone: 'America/New_York' })}`, portalToken);
      const portalLower = await call('GET', `/api/v1/portal/meters/calls/query?${new URLSearchParams({ ...range, windowSize: 'DAY', windowTimeZone: 'america/new_york' })}`, portalToken);
      expect(portalLower.statusCode, portalLower.body).toBe(200);
      expect(portalLower.json()).toEqual(portalCanonical.json());

      const created = await c.post('/api/v1/customers', { key: 'berlin', name: 'Berlin GmbH', currency: 'EUR', timeZone: 'europe/berlin' });
      expect(created.statusCode, created.body).toBe(201);
      expect((created.json() as { timeZone: string }).timeZone).toBe('Europe/Berlin');
      expect(((await c.get('/api/v1/customers/berlin')).json() as { timeZone: string }).timeZone).toBe('Europe/Berlin');
    });
  });

  describe('usage query limits', () => {
    it('too many windows is a 400 before the query runs, naming the parameters and the limit', async () => {
      const from = Date.UTC(2026, 0, 1);
      const r = await usage({ from: new Date(from).toISOString(), to: new Date(from + 100 * DAY).toISOString(), windowSize: 'MINUTE' });
      expect(r.statusCode, r.body).toBe(400);
      const p = r.json() as Problem;
      expect(p.code).toBe('USAGE_QUERY_TOO_LARGE');
      expect(p.message).toContain('windowSize=MINUTE from 2026-01-01T00:00:00.000Z to 2026-04-11T00:00:00.000Z gives 144,000 windows, more than the limit of 100,000');
      expect(p.message).toContain('narrow the query');
      expect(p.limit).toEqual({ windows: 100_000 });
      // At the limit exactly: answered.
      const atLimit = await usage({ from: new Date(from).toISOString(), to: new Date(from + 100_000 * 60_000).toISOString(), windowSize: 'MINUTE' });
      expect(atLimit.statusCode, atLimit.body).toBe(200);
      // The same range by hour is small: answered.
      expect((await usage({ from: new Date(from).toISOString(), to: new Date(from + 100 * DAY).toISOString(), windowSize: 'HOUR' })).statusCode).toBe(200);
    });

    it('more result rows than the limit is a 400 from ClickHouse, and the limit holds for that query only', async () => {
      const saved = USAGE_QUERY_LIMITS.maxResultRows;
      USAGE_QUERY_LIMITS.maxResultRows = 5; // reached cheaply: 24 hourly windows hold acme's calls
      try {
        const r = await usage({ ...range, windowSize: 'HOUR', groupBy: 'region' });
        expect(r.statusCode, r.body).toBe(400);
        const p = r.json() as Problem;
        expect(p.code).toBe('USAGE_QUERY_TOO_LARGE');
        expect(p.message).toContain('more than 5 rows (windows × groups)');
        expect(p.limit).toEqual({ rows: 5 });
        const portal = await call('GET', `/api/v1/portal/meters/calls/query?${new URLSearchParams({ ...range, windowSize: 'HOUR' })}`, portalToken);
        expect(portal.statusCode, portal.body).toBe(400);
        expect((portal.json() as Problem).code).toBe('USAGE_QUERY_TOO_LARGE');
      } finally {
        USAGE_QUERY_LIMITS.maxResultRows = saved;
      }
      // The store's session keeps no limit (chDB would keep a SET for every later query).
      const rs = await rt.store!.ch.query({ query: "SELECT toString(getSetting('max_result_rows')) AS r, toString(getSetting('max_execution_time')) AS t", format: 'JSONEachRow' });
      expect(await rs.json()).toEqual([{ r: '0', t: '0' }]);
      const r = await usage({ ...range, windowSize: 'HOUR', groupBy: 'region' });
      expect(r.statusCode, r.body).toBe(200);
      expect((r.json() as { data: unknown[] }).data).toHaveLength(24);
    });

    it('the limits are in the OpenAPI description of the usage routes', async () => {
      const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json() as { paths: Record<string, { get?: { description?: string; responses?: Record<string, unknown> } }> };
      for (const path of ['/api/v1/meters/{meter}/query', '/api/v1/portal/meters/{meter}/query']) {
        const op = doc.paths[path]!.get!;
        expect(op.description).toContain('at most 100,000 windows');
        expect(op.description).toContain('at most 100,000 result rows');
        expect(op.description).toContain('at most 10 s of query time');
        expect(Object.keys(op.responses ?? {})).toEqual(expect.arrayContaining(['400', '503']));
      }
    });
  });
});

/** The cells of one CSV line (RFC 4180; no line breaks inside cells in these exports). */
function splitCsv(line: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i <= line.length) {
    if (line[i] === '"') {
      let s = '';
      i++;
      for (;;) {
        const j = line.indexOf('"', i);
        s += line.slice(i, j);
        if (line[j + 1] === '"') {
          s += '"';
          i = j + 2;
        } else {
          i = j + 2;
          break;
        }
      }
      out.push(s);
    } else {
      const j = line.indexOf(',', i);
      const end = j === -1 ? line.length : j;
      out.push(line.slice(i, end));
      i = end + 1;
    }
  }
  return out;
}
