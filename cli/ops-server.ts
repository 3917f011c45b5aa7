import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { hasScope, type ApiKeys } from '../api/index.ts';
import type { Metrics } from '../common/metrics.ts';

/**
 * The operations endpoints of a process that serves no API (a processor or a scheduler on its
 * own): `/healthz` (the process answers and its loops run), `/readyz` (its dependencies and its own loops are
 * well, else 503 with the failing checks) and `/metrics` (Prometheus; needs a key with the
 * read scope, as on the API). Orchestrators probe these; Prometheus scrapes them.
 */
export async function startOpsServer(opts: {
  host: string;
  port: number;
  metrics: Metrics;
  keys: ApiKeys;
  ready: () => Promise<Record<string, boolean>>;
  /** False when the process can no longer make progress: `/healthz` answers 503 so it is restarted. */
  alive?: () => boolean;
}): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const send = (status: number, body: unknown, type = 'application/json') => {
      res.writeHead(status, { 'content-type': type });
      res.end(typeof body === 'string' ? body : JSON.stringify(body));
    };
    const url = new URL(req.url ?? '/', 'http://x');
    void (async () => {
      if (req.method !== 'GET') return send(405, { code: 'METHOD_NOT_ALLOWED', message: 'only GET is served here' });
      if (url.pathname === '/healthz') return opts.alive?.() === false ? send(503, { status: 'failed', message: 'a consume loop died; restart this process' }) : send(200, { status: 'ok' });
      if (url.pathname === '/readyz') {
        const checks = await opts.ready();
        const failing = Object.keys(checks).filter((k) => !checks[k]);
        if (failing.length === 0) return send(200, { status: 'ready', checks });
        return send(503, { status: 'not ready', reason: `not ready: ${failing.join(', ')} down`, checks });
      }
      if (url.pathname === '/metrics') {
        const token = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
        const record = token ? opts.keys.verify(token) : undefined;
        if (!token) return send(401, { code: 'AUTH_MISSING', message: 'send an API key with the read scope: Authorization: Bearer ml_...' });
        if (!record) return send(401, { code: 'AUTH_INVALID', message: 'this API key is unknown or revoked' });
        if (!hasScope(record, 'read')) return send(403, { code: 'AUTH_FORBIDDEN', message: 'this key lacks the read scope' });
        return send(200, await opts.metrics.registry.metrics(), opts.metrics.registry.contentType);
      }
      return send(404, { code: 'NOT_FOUND', message: 'this process serves /healthz, /readyz and /metrics only' });
    })().catch((err: unknown) => send(500, { code: 'INTERNAL', message: String(err) }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
