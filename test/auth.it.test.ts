import type { FastifyInstance, HTTPMethods } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { client, total } from './api-client.ts';
import { ce, eventually, startTestNats, startTestRuntime, testConfig, type TestRuntime } from './harness.ts';

/** Every route the app registered, as [method, path] (HEAD routes Fastify adds for GET are left out). */
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

const openApiPath = (path: string) => path.replace(/:(\w+)/g, '{$1}');
const concrete = (path: string) => path.replace(/:(\w+)/g, (_m, name: string) => (name === 'seq' ? '1' : 'x'));

type Reply = Awaited<ReturnType<FastifyInstance['inject']>>;

describe('auth: every route needs a key with the right scope', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;
  let app: FastifyInstance;
  let keys: { ingest: string; read: string; billing: string; ingestRead: string };
  const from = new Date(Date.now() - 86_400_000).toISOString();
  const to = new Date(Date.now() + 86_400_000).toISOString();

  beforeAll(async () => {
    nats = await startTestNats();
    rt = await startTestRuntime(testConfig(nats.url));
    app = rt.app!;
    keys = { ingest: await rt.key('ingest'), read: await rt.key('read'), billing: await rt.key('billing'), ingestRead: await rt.key('ingest', 'read') };
    await client(app, rt.adminKey).createMeter({ slug: 'calls', eventType: 'call', aggregation: 'COUNT' });
  });
  afterAll(async () => {
    await rt?.stop();
    await nats?.stop();
  });

  const call = (method: HTTPMethods, url: string, key?: string, body?: unknown, extraHeaders: Record<string, string> = {}): Promise<Reply> =>
    app.inject({
      method,
      url,
      headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...extraHeaders },
      ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
    });
  let n = 0;
  const event = () => ce({ id: `e${++n}`, type: 'call', subject: 'acme', data: {} });
  const expectForbidden = (r: Reply, needed: string) => {
    expect(r.statusCode, r.body).toBe(403);
    expect(r.json()).toMatchObject({ code: 'AUTH_FORBIDDEN', needed, message: expect.stringContaining(`"${needed}" scope`) });
  };

  it('no key -> 401 AUTH_MISSING on every /api/v1 route and /metrics', async () => {
    const routes = registeredRoutes(app).filter(([, p]) => p.startsWith('/api/v1/') || p === '/metrics');
    expect(routes.length).toBeGreaterThanOrEqual(11);
    for (const [method, path] of routes) {
      const r = await call(method as HTTPMethods, concrete(path), undefined, method === 'POST' ? {} : undefined);
      expect(r.statusCode, `${method} ${path}`).toBe(401);
      expect(r.json(), `${method} ${path}`).toMatchObject({ code: 'AUTH_MISSING', message: expect.stringMatching(/Authorization: Bearer/) });
    }
    // HEAD routes Fastify derives from GET are guarded as well.
    expect((await call('HEAD', '/api/v1/meters')).statusCode).toBe(401);
    expect((await call('HEAD', '/api/v1/dead-letters')).statusCode).toBe(401);
  });

  it('a wrong, malformed or misplaced key -> 401', async () => {
    for (const authorization of [`Bearer ml_${'x'.repeat(32)}`, `Bearer ${rt.adminKey}x`, `Basic ${Buffer.from(`user:${rt.adminKey}`).toString('base64')}`, 'Bearer', `Bearer ${rt.adminKey} extra`]) {
      const r = await app.inject({ method: 'GET', url: '/api/v1/meters', headers: { authorization } });
      expect(r.statusCode, authorization).toBe(401);
      expect(r.json().code, authorization).toBe('AUTH_INVALID');
      expect(r.body).not.toContain(rt.adminKey);
    }
    // A key in the query string is not a credential.
    const q = await call('GET', `/api/v1/meters?api_key=${rt.adminKey}`);
    expect(q.statusCode).toBe(401);
    expect(q.json().code).toBe('AUTH_MISSING');
    // The scheme name is case-insensitive (RFC 7235).
    expect((await app.inject({ method: 'GET', url: '/api/v1/meters', headers: { authorization: `bearer ${keys.read}` } })).statusCode).toBe(200);
  });

  it('an ingest key can send events but cannot read or administer', async () => {
    const k = keys.ingest;
    expect((await call('POST', '/api/v1/events', k, [event()])).statusCode).toBe(202);
    for (const url of ['/api/v1/meters', '/api/v1/meters/calls', `/api/v1/meters/calls/query?subject=acme`, '/api/v1/dead-letters', `/api/v1/reconcile?from=${from}&to=${to}`, '/metrics']) {
      expectForbidden(await call('GET', url, k), 'read');
    }
    const r = await call('GET', '/api/v1/meters/calls/query', k);
    expect(r.json()).toMatchObject({ needed: 'read', has: ['ingest'] });
    expectForbidden(await call('POST', '/api/v1/meters', k, { slug: 'nope', eventType: 'call', aggregation: 'COUNT' }), 'admin');
    expectForbidden(await call('POST', '/api/v1/api-keys', k, { name: 'escalate', scopes: ['admin'] }), 'admin');
    expectForbidden(await call('GET', '/api/v1/api-keys', k), 'admin');
    expectForbidden(await call('DELETE', '/api/v1/meters/calls', k), 'admin');
    expectForbidden(await call('POST', '/api/v1/dead-letters/1/redrive', k), 'admin');
  });

  it('a read key can read but cannot ingest, create meters or administer', async () => {
    const k = keys.read;
    const admin = client(app, rt.adminKey);
    await eventually(() => total(admin, 'calls', 'acme'), (v) => v !== '0');
    for (const url of ['/api/v1/meters', '/api/v1/meters/calls', `/api/v1/meters/calls/query?subject=acme`, '/api/v1/dead-letters', `/api/v1/reconcile?from=${from}&to=${to}`, '/metrics']) {
      const r = await call('GET', url, k);
      expect(r.statusCode, `${url}: ${r.body}`).toBe(200);
    }
    expect((await call('GET', '/metrics', k)).body).toMatch(/^# HELP meterline_/m);
    expectForbidden(await call('POST', '/api/v1/events', k, [event()]), 'ingest');
    expectForbidden(await call('POST', '/api/v1/meters', k, { slug: 'nope', eventType: 'call', aggregation: 'COUNT' }), 'admin');
    expectForbidden(await call('DELETE', '/api/v1/meters/calls', k), 'admin');
    expectForbidden(await call('POST', '/api/v1/api-keys', k, { name: 'escalate', scopes: ['admin'] }), 'admin');
    expectForbidden(await call('DELETE', '/api/v1/api-keys/whatever', k), 'admin');
    expectForbidden(await call('POST', '/api/v1/dead-letters/1/redrive', k), 'admin');
    expect((await call('GET', '/api/v1/meters/nope', k)).statusCode).toBe(404);
  });

  it('a billing key is not an ingest or read key; a key with ingest+read has both', async () => {
    expectForbidden(await call('POST', '/api/v1/events', keys.billing, [event()]), 'ingest');
    expectForbidden(await call('GET', '/api/v1/meters', keys.billing), 'read');
    expect((await call('POST', '/api/v1/events', keys.ingestRead, [event()])).statusCode).toBe(202);
    expect((await call('GET', '/api/v1/meters/calls/query', keys.ingestRead)).statusCode).toBe(200);
    expectForbidden(await call('POST', '/api/v1/meters', keys.ingestRead, { slug: 'nope', eventType: 'call', aggregation: 'COUNT' }), 'admin');
  });

  it('an admin key can do everything', async () => {
    const k = rt.adminKey;
    expect((await call('POST', '/api/v1/events', k, [event()])).statusCode).toBe(202);
    const created = await call('POST', '/api/v1/meters', k, { slug: 'admin-made', eventType: 'call', aggregation: 'COUNT' });
    expect(created.statusCode, created.body).toBe(201);
    for (const url of ['/api/v1/meters', '/api/v1/meters/admin-made', '/api/v1/meters/calls/query', '/api/v1/dead-letters', `/api/v1/reconcile?from=${from}&to=${to}`, '/metrics', '/api/v1/api-keys']) {
      const r = await call('GET', url, k);
      expect(r.statusCode, `${url}: ${r.body}`).toBe(200);
    }
    expect((await call('DELETE', '/api/v1/meters/admin-made', k)).statusCode).toBe(204);
    // Redrive is allowed (there is nothing to redrive: 404, not 403).
    const redrive = await call('POST', '/api/v1/dead-letters/999999/redrive', k);
    expect(redrive.statusCode).toBe(404);
    expect(redrive.json().code).toBe('DEADLETTER_NOT_FOUND');
  });

  it('key listings never show a key; a revoked key stops working at once', async () => {
    const admin = client(app, rt.adminKey);
    const created = await admin.post('/api/v1/api-keys', { name: 'short-lived', scopes: ['read', 'ingest'] });
    expect(created.statusCode).toBe(201);
    const { key, record } = created.json() as { key: string; record: { id: string; scopes: string[]; prefix: string } };
    expect(key).toMatch(/^ml_/);
    expect(record.scopes.sort()).toEqual(['ingest', 'read']);
    expect((await call('GET', '/api/v1/meters', key)).statusCode).toBe(200);

    const listing = await admin.get('/api/v1/api-keys');
    expect(listing.statusCode).toBe(200);
    expect(listing.body).not.toContain(key);
    expect(listing.body).not.toContain(rt.adminKey);
    expect((listing.json() as { id: string }[]).map((r) => r.id)).toContain(record.id);

    const bad = await admin.post('/api/v1/api-keys', { name: 'x', scopes: ['superuser'] });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: 'REQUEST_INVALID', errors: [{ field: 'body.scopes.0' }] });

    expect((await admin.del(`/api/v1/api-keys/${record.id}`)).statusCode).toBe(204);
    for (const [method, url, body] of [['GET', '/api/v1/meters', undefined], ['POST', '/api/v1/events', [event()]]] as const) {
      const r = await call(method, url, key, body);
      expect(r.statusCode, `${method} ${url}`).toBe(401);
      expect(r.json().code).toBe('AUTH_INVALID');
    }
    expect((await admin.del(`/api/v1/api-keys/${record.id}`)).statusCode).toBe(404);
    expect(((await admin.get('/api/v1/api-keys')).json() as { id: string }[]).map((r) => r.id)).not.toContain(record.id);
  });

  it('/healthz, /readyz, /openapi.json and /docs need no key; over a real socket too', async () => {
    expect((await call('GET', '/healthz')).json()).toEqual({ status: 'ok' });
    const ready = await call('GET', '/readyz');
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ status: 'ready', checks: { nats: true, clickhouse: true, processor: true, processorWrites: true } });
    expect((await call('GET', '/openapi.json')).statusCode).toBe(200);
    expect((await call('GET', '/docs/')).statusCode).toBe(200);
    // Credentials on a public route do no harm, even wrong ones.
    expect((await call('GET', '/healthz', 'wrong')).statusCode).toBe(200);

    expect((await fetch(`${rt.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${rt.url}/readyz`)).status).toBe(200);
    const noKey = await fetch(`${rt.url}/metrics`);
    expect(noKey.status).toBe(401);
    // Errors are RFC 9457 problem documents (what OpenMeter's SDKs read), with Meterline's code.
    expect(noKey.headers.get('content-type')).toBe('application/problem+json');
    expect(await noKey.json()).toMatchObject({ code: 'AUTH_MISSING', status: 401, title: 'Unauthorized', detail: expect.stringMatching(/Authorization: Bearer/) });
    const withRead = await fetch(`${rt.url}/metrics`, { headers: { authorization: `Bearer ${keys.read}` } });
    expect(withRead.status).toBe(200);
    expect(withRead.headers.get('content-type')).toMatch(/^text\/plain/);
  });

  it('/openapi.json documents every registered /api/v1 route, and nothing that is not one', async () => {
    const doc = (await call('GET', '/openapi.json')).json() as {
      security?: unknown;
      components: { securitySchemes: Record<string, unknown> };
      paths: Record<string, Record<string, { summary?: string; security?: unknown[]; responses?: unknown }>>;
    };
    const routes = registeredRoutes(app);
    const api = routes.filter(([, p]) => p.startsWith('/api/v1'));
    expect(api.map(([m, p]) => `${m} ${p}`).sort()).toEqual(
      expect.arrayContaining([
        'POST /api/v1/events',
        'POST /api/v1/meters',
        'GET /api/v1/meters',
        'GET /api/v1/meters/:meter',
        'DELETE /api/v1/meters/:meter',
        'GET /api/v1/meters/:meter/query',
        'POST /api/v1/api-keys',
        'GET /api/v1/api-keys',
        'DELETE /api/v1/api-keys/:id',
        'GET /api/v1/dead-letters',
        'POST /api/v1/dead-letters/:seq/redrive',
        'GET /api/v1/reconcile',
      ]),
    );
    for (const [method, path] of [...api, ['GET', '/healthz'], ['GET', '/readyz'], ['GET', '/metrics']] as [string, string][]) {
      const op = doc.paths[openApiPath(path)]?.[method.toLowerCase()];
      expect(op, `${method} ${path} has no OpenAPI entry`).toBeDefined();
      expect(op!.summary, `${method} ${path} has no summary`).toBeTruthy();
    }
    // The reverse: everything documented is served.
    const documented = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).filter((m) => m !== 'parameters').map((m) => `${m.toUpperCase()} ${p}`));
    const served = new Set(routes.map(([m, p]) => `${m} ${openApiPath(p)}`));
    expect(documented.filter((d) => !served.has(d))).toEqual([]);
    // Keys are documented as bearer auth; the public probes say they need none.
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.security).toEqual([{ bearer: [] }]);
    expect(doc.paths['/healthz']!.get!.security).toEqual([]);
    expect(doc.paths['/readyz']!.get!.security).toEqual([]);
  });
});
