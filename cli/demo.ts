import { Decimal } from '../common/decimal.ts';
import { seededRandom } from '../common/random.ts';

/**
 * The demo workload of `meterline start --demo`: three customers, three meters, ~700 events
 * including exact duplicates, a retried request and late events (hours and days old). It prints
 * the totals it expects, then polls the usage API until Meterline shows exactly those totals.
 * Event ids are fixed, so running the demo again changes nothing (every event is a duplicate).
 */
const CUSTOMERS = ['acme', 'globex', 'initech'] as const;
const MODELS = ['small', 'large'] as const;
const ENDPOINTS = ['/search', '/embed', '/chat'] as const;

interface DemoEvent {
  specversion: '1.0';
  id: string;
  source: string;
  type: string;
  subject: string;
  time: string;
  data: Record<string, unknown>;
}


export function demoEvents(nowMs: number): { onTime: DemoEvent[]; late: DemoEvent[] } {
  const rand = seededRandom(42);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
  const hour = Math.floor(nowMs / 3_600_000) * 3_600_000;
  const onTime: DemoEvent[] = [];
  for (let i = 0; i < 600; i++) {
    const subject = pick(CUSTOMERS);
    const time = new Date(hour - 2 * 3_600_000 + Math.floor(rand() * 2 * 3_600_000)).toISOString();
    if (i % 2 === 0) {
      onTime.push({ specversion: '1.0', id: `demo-${i}`, source: 'demo-gateway', type: 'api.request', subject, time, data: { endpoint: pick(ENDPOINTS), user: `user-${Math.floor(rand() * 12)}` } });
    } else {
      onTime.push({ specversion: '1.0', id: `demo-${i}`, source: 'demo-llm', type: 'llm.completion', subject, time, data: { model: pick(MODELS), tokens: `${Math.floor(rand() * 4000)}.${Math.floor(rand() * 10)}` } });
    }
  }
  const late: DemoEvent[] = [];
  for (let i = 0; i < 60; i++) {
    const ageMs = i % 2 === 0 ? 5 * 3_600_000 : 2 * 86_400_000;
    late.push({ specversion: '1.0', id: `demo-late-${i}`, source: 'demo-llm', type: 'llm.completion', subject: pick(CUSTOMERS), time: new Date(hour - ageMs).toISOString(), data: { model: pick(MODELS), tokens: 1000 + i } });
  }
  return { onTime, late };
}

const METERS = [
  { slug: 'api-calls', name: 'API calls', eventType: 'api.request', aggregation: 'COUNT', groupBy: { endpoint: '$.endpoint' } },
  { slug: 'llm-tokens', name: 'LLM tokens', eventType: 'llm.completion', aggregation: 'SUM', valueProperty: '$.tokens', groupBy: { model: '$.model' } },
  { slug: 'active-users', name: 'Active users', eventType: 'api.request', aggregation: 'UNIQUE_COUNT', valueProperty: '$.user' },
];

export async function runDemo(baseUrl: string, apiKey: string, say: (s: string) => void): Promise<boolean> {
  const auth = { authorization: `Bearer ${apiKey}` };
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${baseUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth, ...headers }, body: JSON.stringify(body) });

  say('\nDemo: creating meters api-calls (COUNT), llm-tokens (SUM), active-users (UNIQUE_COUNT)');
  for (const m of METERS) {
    const r = await post('/api/v1/meters', m);
    if (r.status !== 201 && r.status !== 409) throw new Error(`creating meter ${m.slug}: ${r.status} ${await r.text()}`);
  }
  const now = Date.now();
  const { onTime, late } = demoEvents(now);
  let sent = 0;
  for (let i = 0; i < onTime.length; i += 100) {
    const batch = onTime.slice(i, i + 100);
    const headers = { 'idempotency-key': `demo-batch-${i}`, 'content-type': 'application/cloudevents-batch+json' };
    const r = await post('/api/v1/events', batch, headers);
    if (r.status !== 202) throw new Error(`ingest: ${r.status} ${await r.text()}`);
    sent += batch.length;
  }
  // A producer retry of the first batch (same Idempotency-Key) and 50 events sent again in a new batch.
  await post('/api/v1/events', onTime.slice(0, 100), { 'idempotency-key': 'demo-batch-0', 'content-type': 'application/cloudevents-batch+json' });
  await post('/api/v1/events', onTime.slice(200, 250));
  await post('/api/v1/events', late);
  const bad = await post('/api/v1/events', [{ ...onTime[0], id: 'demo-bad', time: 'yesterday' }, { specversion: '1.0', id: 'demo-bad-2', source: 'demo', type: 'api.request' }]);
  say(`Demo: sent ${sent} events, a retried batch, 50 duplicates and ${late.length} late events (5 hours and 2 days old).`);
  const badBody = (await bad.json()) as { code: string; errors: unknown[] };
  say(`Demo: a batch with invalid events was rejected as it should be (${bad.status} ${badBody.code}): ${JSON.stringify(badBody.errors)}`);

  const expected = new Map<string, { calls: number; tokens: Decimal; users: Set<string> }>();
  for (const c of CUSTOMERS) expected.set(c, { calls: 0, tokens: new Decimal(0), users: new Set() });
  for (const e of [...onTime, ...late]) {
    const x = expected.get(e.subject)!;
    if (e.type === 'api.request') {
      x.calls++;
      x.users.add(String(e.data.user));
    } else x.tokens = x.tokens.plus(String(e.data.tokens));
  }

  const from = new Date(Math.floor((now - 3 * 86_400_000) / 86_400_000) * 86_400_000).toISOString();
  const to = new Date(Math.ceil((now + 60_000) / 86_400_000) * 86_400_000).toISOString();
  const usage = async (meter: string) => {
    const r = await fetch(`${baseUrl}/api/v1/meters/${meter}/query?from=${from}&to=${to}&groupBy=subject`, { headers: auth });
    if (!r.ok) throw new Error(`usage query for ${meter} failed: ${r.status} ${await r.text()}`);
    const body = (await r.json()) as { data: { subject: string; value: string }[] };
    return new Map(body.data.map((d) => [d.subject, d.value]));
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    const [calls, tokens, users] = await Promise.all([usage('api-calls'), usage('llm-tokens'), usage('active-users')]);
    const matches = CUSTOMERS.every((c) => {
      const x = expected.get(c)!;
      return calls.get(c) === String(x.calls) && tokens.get(c) === x.tokens.toFixed() && users.get(c) === String(x.users.size);
    });
    if (matches || Date.now() > deadline) {
      say(`\nUsage from ${from} to ${to} (GET /api/v1/meters/{meter}/query?groupBy=subject):`);
      say('  customer   api-calls   llm-tokens      active-users   expected');
      for (const c of CUSTOMERS) {
        const x = expected.get(c)!;
        say(`  ${c.padEnd(10)} ${(calls.get(c) ?? '0').padStart(9)}   ${(tokens.get(c) ?? '0').padStart(12)}   ${(users.get(c) ?? '0').padStart(12)}   ${x.calls} / ${x.tokens.toFixed()} / ${x.users.size}`);
      }
      const rec = await fetch(`${baseUrl}/api/v1/reconcile?from=${from}&to=${to}`, { headers: auth });
      const recBody = (await rec.json()) as { ok: boolean };
      say(`\nTotals ${matches ? 'match the events sent exactly (duplicates counted once, late events in their own hours)' : 'DO NOT match yet; the processor may be behind'}.`);
      say(`Reconciliation of rollups against raw events: ${recBody.ok ? 'ok' : 'MISMATCH'} (GET /api/v1/reconcile)`);
      say(`\nTry it:\n  curl -H "Authorization: Bearer ${apiKey}" "${baseUrl}/api/v1/meters/llm-tokens/query?windowSize=HOUR&groupBy=model"\n`);
      return matches;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
