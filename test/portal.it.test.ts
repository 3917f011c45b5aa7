import type { FastifyInstance, HTTPMethods } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { client, total } from './api-client.ts';
import { ce, eventually, startTestNats, startTestRuntime, testConfig, type TestRuntime } from './harness.ts';

/** Every route the app registered, as [method, path] (as in auth.it.test.ts). */
function registeredRoutes(app: FastifyInstance): [string, string][] {
  const out: [string, string][] = [];
  const stack: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^((?:[│ ] {3})*)[├└]── (.*?) \(([A-Z, ]+)\)$/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length / 4;
    stack.length = depth;
    const full = (stack[depth - 1] ?? '') + m[2]!;
    stack.push(full);
    for (const method of m[3]!.split(', ')) if (method !== 'HEAD') out.push([method, full]);
  }
  return out;
}

/**
 * Customer-portal tokens and the dashboard's aggregate routes over the API: a portal token is
 * bound to one customer and opens nothing but the portal routes of that customer; the accounts
 * summary gives the same numbers as the usage API; the UI's static files are public and hold no data.
 */
describe('portal tokens and dashboard routes', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;
  let app: FastifyInstance;
  let admin: ReturnType<typeof client>;
  const now = Date.now();

  beforeAll(async () => {
    nats = await startTestNats();
    rt = await startTestRuntime(testConfig(nats.url, { BILLING_SCHEDULE: '0 0 1 1 *', ANOMALY_SCHEDULE: '0 0 1 1 *' }));
    app = rt.app!;
    admin = client(app, rt.adminKey);
    await admin.createMeter({ slug: 'calls', name: 'Calls', eventType: 'call', aggregation: 'COUNT', groupBy: { endpoint: '$.endpoint' } });
    await admin.createMeter({ slug: 'users', eventType: 'call', aggregation: 'UNIQUE_COUNT', valueProperty: '$.user' });
    for (const [key, tz] of [['acme', 'UTC'], ['globex', 'Europe/Berlin']] as const) {
      expect((await admin.post('/api/v1/customers', { key, name: key.toUpperCase(), currency: 'USD', timeZone: tz })).statusCode).toBe(201);
    }
    expect((await admin.post('/api/v1/plans', { key: 'basic', name: 'Basic', currency: 'USD', interval: 'month', baseFee: { amount: '10.00', timing: 'arrears' }, charges: [{ key: 'calls', meter: 'calls', price: { model: 'per_unit', unitPrice: '0.10' } }] })).statusCode).toBe(201);
    const start = new Date(Date.UTC(new Date(now).getUTCFullYear(), new Date(now).getUTCMonth() - 1, 1)).toISOString();
    for (const key of ['acme', 'globex']) expect((await admin.post('/api/v1/subscriptions', { id: `sub-${key}`, customer: key, plan: 'basic', start })).statusCode).toBe(201);
    const events = [
      ...Array.from({ length: 12 }, (_, i) => ce({ id: `a${i}`, type: 'call', subject: 'acme', time: new Date(now - 60_000 - i * 1000).toISOString(), data: { endpoint: i % 2 ? '/a' : '/b', user: `u${i % 5}` } })),
      ...Array.from({ length: 5 }, (_, i) => ce({ id: `g${i}`, type: 'call', subject: 'globex', time: new Date(now - 60_000 - i * 1000).toISOString(), data: { endpoint: '/a', user: 'x' } })),
    ];
    expect((await admin.ingest(events)).statusCode).toBe(202);
    await eventually(async () => [await total(admin, 'calls', 'acme'), await total(admin, 'calls', 'globex')].join(), (v) => v === '12,5');
  }, 120_000);
  afterAll(async () => {
    await rt?.stop();
    await nats?.stop();
  });

  const call = (method: HTTPMethods, url: string, token?: string, body?: unknown) =>
    app.inject({ method, url, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { payload: JSON.stringify(body) }) });
  const createToken = async (body: Record<string, unknown>) => {
    const r = await admin.post('/api/v1/portal-tokens', body);
    expect(r.statusCode, r.body).toBe(201);
    return r.json() as { token: string; portalUrl: string; record: { id: string; customer: string; prefix: string; expiresAt: string | null } };
  };

  it('GET /api/v1/accounts: per customer, the usage API’s numbers for the current period, projected total, open anomalies', async () => {
    const readKey = await rt.key('read');
    // Served from the accounts cache: it shows the usage within a refresh (a few seconds).
    const calls = (b: string, key: string) => (JSON.parse(b) as { items?: { customer: { key: string }; usage: { meter: string; value: string }[] }[] }).items?.find((i) => i.customer.key === key)?.usage.find((u) => u.meter === 'calls')?.value;
    const r = await eventually(() => call('GET', '/api/v1/accounts', readKey), (x) => x.statusCode === 200 && calls(x.body, 'acme') === '12' && calls(x.body, 'globex') === '5');
    const body = r.json() as { asOf: string; items: { customer: { key: string; timeZone: string }; period: { start: string; source: string }; usage: { meter: string; value: string }[]; projected: { projectedTotal: string; amountSoFar: string } | null; openAnomalies: number }[] };
    expect(body.items.map((i) => i.customer.key)).toEqual(['acme', 'globex']);
    for (const item of body.items) {
      expect(item.period.source).toBe('subscription');
      for (const u of item.usage) {
        const q = await admin.query(u.meter, { subject: item.customer.key, from: item.period.start, to: body.asOf });
        expect(u.value, `${item.customer.key} ${u.meter}`).toBe(q.data[0]?.value ?? '0');
      }
      const p = (await admin.get(`/api/v1/customers/${item.customer.key}/projected-invoice`)).json() as { subscriptions: { amountSoFar: string }[] };
      expect(item.projected!.amountSoFar).toBe(p.subscriptions[0]!.amountSoFar);
      expect(item.openAnomalies).toBe(0);
    }
    expect(body.items[0]!.usage).toEqual([
      { meter: 'calls', name: 'Calls', aggregation: 'COUNT', value: '12' },
      { meter: 'users', name: 'users', aggregation: 'UNIQUE_COUNT', value: '5' },
    ]);
    expect(body.items[0]!.projected!.amountSoFar).toBe('11.20'); // 10.00 base fee + 12 × 0.10
    const one = await call('GET', '/api/v1/accounts/globex', rt.adminKey);
    expect(one.json()).toMatchObject({ customer: { key: 'globex', timeZone: 'Europe/Berlin' }, usage: [{ meter: 'calls', value: '5' }, { meter: 'users', value: '1' }] });
    expect((await call('GET', '/api/v1/accounts/nobody', rt.adminKey)).statusCode).toBe(404);
    expect((await call('GET', '/api/v1/accounts', await rt.key('ingest'))).statusCode).toBe(403);
  });

  it('GET /api/v1/whoami names the key and its scopes, never the key', async () => {
    const k = await rt.key('read', 'billing');
    const r = await call('GET', '/api/v1/whoami', k);
    expect(r.statusCode).toBe(200);
    expect(r.json()).toMatchObject({ name: 'test read+billing', scopes: ['read', 'billing'], prefix: k.slice(0, 8) });
    expect(r.body).not.toContain(k);
    expect((await call('GET', '/api/v1/whoami', await rt.key('ingest'))).statusCode).toBe(200);
  });

  it('only admins create portal tokens, for an existing customer; the token is shown once', async () => {
    for (const scopes of [['read'], ['billing'], ['read', 'billing', 'ingest']] as const) {
      const r = await call('POST', '/api/v1/portal-tokens', await rt.key(...scopes), { customer: 'acme' });
      expect(r.statusCode).toBe(403);
    }
    expect((await admin.post('/api/v1/portal-tokens', { customer: 'nobody' })).statusCode).toBe(404);
    expect((await admin.post('/api/v1/portal-tokens', { customer: 'acme', expiresAt: '2001-01-01T00:00:00Z' })).statusCode).toBe(400);
    expect((await admin.post('/api/v1/portal-tokens', {})).statusCode).toBe(400);
    const t = await createToken({ customer: 'acme' });
    expect(t.token).toMatch(/^mlp_[\w-]{32}$/);
    expect(t.portalUrl).toBe(`/ui/portal/#token=${t.token}`);
    const list = await admin.get('/api/v1/portal-tokens?customer=acme');
    expect((list.json() as { id: string }[]).map((x) => x.id)).toContain(t.record.id);
    expect(list.body).not.toContain(t.token);
  });

  it('a portal token opens its own customer’s portal routes and nothing else', async () => {
    const { token } = await createToken({ customer: 'acme' });
    const acct = await call('GET', '/api/v1/portal/account', token);
    expect(acct.statusCode, acct.body).toBe(200);
    expect(acct.json()).toMatchObject({ customer: { key: 'acme' }, usage: [{ meter: 'calls', value: '12' }] });
    expect(acct.body).not.toContain('globex');
    const usage = await call('GET', `/api/v1/portal/meters/calls/query?groupBy=endpoint&from=${new Date(now - 3_600_000).toISOString()}`, token);
    expect(usage.statusCode, usage.body).toBe(200);
    expect((usage.json() as { data: { value: string; groupBy: { endpoint: string } }[] }).data.map((d) => [d.groupBy.endpoint, d.value]).sort()).toEqual([['/a', '6'], ['/b', '6']]);
    expect((await call('GET', '/api/v1/portal/meters', token)).json()).toEqual([{ slug: 'calls', name: 'Calls', aggregation: 'COUNT', groupBy: ['endpoint'] }]);
    for (const url of ['/api/v1/portal/projected-invoice', '/api/v1/portal/invoices', '/api/v1/portal/anomalies', '/api/v1/portal/account?customer=acme', '/api/v1/portal/meters/calls/query?subject=acme']) {
      const r = await call('GET', url, token);
      expect(r.statusCode, `${url}: ${r.body}`).toBe(200);
      expect(r.body, url).not.toContain('globex');
    }
    // Naming another customer anywhere: 403. A meter not on the plan: 404.
    for (const url of ['/api/v1/portal/account?customer=globex', '/api/v1/portal/meters/calls/query?subject=globex', '/api/v1/portal/meters/calls/query?subject=acme&subject=globex', '/api/v1/portal/invoices?customer=globex', '/api/v1/portal/projected-invoice?customer=globex', '/api/v1/portal/anomalies?customer=globex']) {
      const r = await call('GET', url, token);
      expect(r.statusCode, url).toBe(403);
      expect(r.json()).toMatchObject({ code: 'AUTH_FORBIDDEN', message: expect.stringContaining('another customer') });
    }
    expect((await call('GET', '/api/v1/portal/meters/users/query', token)).statusCode).toBe(404);
    // Every other route of the API refuses a portal token with 403, whatever its scope.
    const others = registeredRoutes(app).filter(([, p]) => (p.startsWith('/api/v1/') && !p.startsWith('/api/v1/portal/')) || p === '/metrics');
    expect(others.length).toBeGreaterThan(30);
    for (const [method, path] of others) {
      const url = path.replace(/:(\w+)/g, (_m, n: string) => (n === 'seq' ? '1' : n === 'customer' ? 'acme' : 'x'));
      const r = await call(method as HTTPMethods, url, token, method === 'POST' || method === 'PUT' ? {} : undefined);
      expect(r.statusCode, `${method} ${path}`).toBe(403);
      expect(r.json().code).toBe('AUTH_FORBIDDEN');
    }
    // And an API key, even an admin's, does not open portal routes.
    const r = await call('GET', '/api/v1/portal/account', rt.adminKey);
    expect(r.statusCode).toBe(403);
    expect(r.json().message).toMatch(/portal token/);
  });

  it("another customer's invoice is a 404 through the portal, its own a 200", async () => {
    const lastMonth = new Date(Date.UTC(new Date(now).getUTCFullYear(), new Date(now).getUTCMonth() - 1, 1)).toISOString().slice(0, 7);
    const close = await admin.post('/api/v1/billing/close', { period: lastMonth });
    expect(close.statusCode, close.body).toBe(200);
    const invoices = (close.json() as { invoices: { id: string; customer: string }[] }).invoices;
    const mine = invoices.find((i) => i.customer === 'acme')!;
    const theirs = invoices.find((i) => i.customer === 'globex')!;
    const { token } = await createToken({ customer: 'acme' });
    expect((await call('GET', `/api/v1/portal/invoices/${mine.id}`, token)).statusCode).toBe(200);
    const r = await call('GET', `/api/v1/portal/invoices/${theirs.id}`, token);
    expect(r.statusCode).toBe(404);
    expect(r.body).not.toContain('globex');
    const list = (await call('GET', '/api/v1/portal/invoices', token)).json() as { items: { id: string; customer: string }[] };
    expect(list.items.map((i) => i.id)).toEqual([mine.id]);

    // Usage reconciliation of that month: every invoice line agrees with the metered usage.
    const rec = await admin.get(`/api/v1/billing/usage-reconcile?period=${lastMonth}`);
    expect(rec.statusCode, rec.body).toBe(200);
    const rows = (rec.json() as { ok: boolean; rows: { customer: string; meter: string; status: string; metered: string; invoiced: string }[] }).rows;
    expect(rows.map((x) => [x.customer, x.meter, x.status])).toEqual([
      ['acme', 'calls', 'ok'],
      ['globex', 'calls', 'ok'],
    ]);
  });

  it('revoked and expired tokens stop working at once', async () => {
    const t = await createToken({ customer: 'acme' });
    expect((await call('GET', '/api/v1/portal/account', t.token)).statusCode).toBe(200);
    expect((await admin.del(`/api/v1/portal-tokens/${t.record.id}`)).statusCode).toBe(204);
    const r = await call('GET', '/api/v1/portal/account', t.token);
    expect(r.statusCode).toBe(401);
    expect(r.json().code).toBe('AUTH_INVALID');
    expect((await admin.del(`/api/v1/portal-tokens/${t.record.id}`)).statusCode).toBe(404);

    const soon = await createToken({ customer: 'acme', expiresAt: new Date(Date.now() + 1500).toISOString() });
    expect((await call('GET', '/api/v1/portal/account', soon.token)).statusCode).toBe(200);
    await new Promise((res) => setTimeout(res, 1600));
    expect((await call('GET', '/api/v1/portal/account', soon.token)).statusCode).toBe(401);
    // A made-up token of the right shape is just invalid.
    expect((await call('GET', '/api/v1/portal/account', `mlp_${'x'.repeat(32)}`)).statusCode).toBe(401);
    expect((await call('GET', '/api/v1/portal/account')).statusCode).toBe(401);
  });

  it('/ui/ serves public assets with no data in them, under a strict CSP', async () => {
    for (const url of ['/ui/', '/ui/portal/', '/ui/assets/app.js', '/ui/assets/app.css', '/ui/assets/portal.js', '/ui/assets/portal.css']) {
      const r = await call('GET', url);
      expect(r.statusCode, url).toBe(200);
      expect(r.body, url).not.toMatch(/acme|globex|ACME/);
      expect(r.body).not.toContain(rt.adminKey);
      expect(r.headers['content-security-policy'], url).toContain("default-src 'self'");
      expect(r.headers['x-frame-options']).toBe('DENY');
    }
    expect((await call('GET', '/ui')).statusCode).toBe(301);
    expect((await call('GET', '/')).headers.location).toBe('/ui/');
    expect((await call('GET', '/ui/assets/nope.js')).statusCode).toBe(404);
    expect((await call('GET', '/ui/../package.json')).statusCode).toBe(404);
    // Outside /api/v1 and /metrics, every route is one of these public ones.
    const publicRoutes = registeredRoutes(app).filter(([, p]) => !p.startsWith('/api/v1/') && p !== '/metrics').map(([, p]) => p);
    for (const p of publicRoutes) expect(p, p).toMatch(/^\/(healthz|readyz|openapi\.json|docs.*|ui.*|)$/);
  });
});
