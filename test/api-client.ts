import type { FastifyInstance } from 'fastify';

/** Thin helpers over `app.inject()` for tests: what a producer or a finance user would send. */
export function client(app: FastifyInstance, key: string) {
  const auth = { authorization: `Bearer ${key}` };
  return {
    async ingest(body: unknown, headers: Record<string, string> = {}) {
      return app.inject({ method: 'POST', url: '/api/v1/events', headers: { 'content-type': 'application/json', ...auth, ...headers }, payload: typeof body === 'string' ? body : JSON.stringify(body) });
    },
    async createMeter(meter: Record<string, unknown>) {
      const r = await app.inject({ method: 'POST', url: '/api/v1/meters', headers: { 'content-type': 'application/json', ...auth }, payload: JSON.stringify(meter) });
      if (r.statusCode !== 201) throw new Error(`create meter: ${r.statusCode} ${r.body}`);
      return r.json() as { id: string; slug: string };
    },
    async query(slug: string, params: Record<string, string | string[]> = {}) {
      const qs = new URLSearchParams();
      for (const [k, v] of Object.entries(params)) for (const x of Array.isArray(v) ? v : [v]) qs.append(k, x);
      const r = await app.inject({ method: 'GET', url: `/api/v1/meters/${slug}/query?${qs}`, headers: auth });
      if (r.statusCode !== 200) throw new Error(`query: ${r.statusCode} ${r.body}`);
      return r.json() as { data: { value: string; windowStart: string; windowEnd: string; subject: string | null; groupBy: Record<string, string> }[]; source: string };
    },
    async get(url: string) {
      return app.inject({ method: 'GET', url, headers: auth });
    },
    async del(url: string) {
      return app.inject({ method: 'DELETE', url, headers: auth });
    },
    async post(url: string, body?: unknown) {
      return app.inject({ method: 'POST', url, headers: { ...auth, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { payload: JSON.stringify(body) }) });
    },
  };
}

/** Total of a meter for one subject over all time (single row or "0"). */
export async function total(c: ReturnType<typeof client>, slug: string, subject: string, extra: Record<string, string> = {}): Promise<string> {
  const r = await c.query(slug, { subject, ...extra });
  return r.data[0]?.value ?? '0';
}
