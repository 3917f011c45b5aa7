import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { billingDemoEvents, LATE_TOKENS } from '../cli/demo-billing.ts';
import { demoEvents } from '../cli/demo.ts';
import { Decimal } from '../common/decimal.ts';
import { freePort } from '../common/nats-server.ts';
import { eventually, tempDir } from './harness.ts';

/**
 * `meterline start --demo` as a new user runs it (its own embedded nats-server and ClickHouse,
 * a fresh state folder): the billing demo closes a period that ends during the demo with the
 * usage it sent on it, and bills a late event as a correction on the next invoice. Checked
 * through the HTTP API with the admin key the demo saved.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const LAST_LINE = 'Press Ctrl-C to stop.';

interface Line {
  kind: string;
  meter?: string;
  quantity: string;
  amount: string;
  periodStart: string;
  periodEnd: string;
}
interface Invoice {
  id: string;
  customer: string;
  status: string;
  periodStart: string;
  periodEnd: string;
  lines: Line[];
}

/** What the demo sent per customer: API calls and LLM tokens (ids are unique; duplicates it sends count once). */
function sentBy(subject: string): { calls: number; tokens: Decimal } {
  const { onTime, late } = demoEvents(0);
  const all = [...onTime, ...late, ...billingDemoEvents('x', 0, 1)].filter((e) => e.subject === subject);
  return {
    calls: all.filter((e) => e.type === 'api.request').length,
    tokens: all.filter((e) => e.type === 'llm.completion').reduce((a, e) => a.plus(String(e.data.tokens)), new Decimal(0)),
  };
}

const usage = (inv: Invoice, meter: string) => inv.lines.filter((l) => l.kind === 'usage' && l.meter === meter).reduce((a, l) => a.plus(l.quantity), new Decimal(0));

describe('meterline start --demo', () => {
  const stateDir = tempDir('meterline-demo-');
  let child: ChildProcess | undefined;
  let output = '';

  afterAll(async () => {
    const c = child;
    if (c && c.exitCode === null && c.signalCode === null) {
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGINT');
      await exited;
    }
    fs.rmSync(stateDir, { recursive: true, force: true });
  });

  it('finalizes a period that ends during the demo with its usage, and bills the late event as a correction', async () => {
    const startedAt = Date.now();
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const env: Record<string, string | undefined> = { ...process.env, PORT: String(port), METERLINE_STATE_DIR: stateDir, LOG_LEVEL: 'warn' };
    for (const k of ['BILLING_GRACE', 'NATS_URL', 'CLICKHOUSE_URL', 'METERLINE_API_KEY']) delete env[k];
    const c = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'cli/main.ts'), 'start', '--demo'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    const keep = (b: Buffer) => (output += b.toString());
    c.stdout!.on('data', keep);
    c.stderr!.on('data', keep);
    await eventually(async () => output, (o) => o.includes(LAST_LINE) || c.exitCode !== null, 280_000).catch((err: unknown) => {
      throw new Error(`${String(err)}\n--- demo output ---\n${output.slice(-6000)}`);
    });
    expect(c.exitCode, output.slice(-6000)).toBeNull();
    expect(output).toContain('BILLING_GRACE=20s for this process');

    const key = fs.readFileSync(path.join(stateDir, 'admin-key'), 'utf8').trim();
    const api = async <T>(p: string): Promise<T> => {
      const r = await fetch(`${url}${p}`, { headers: { authorization: `Bearer ${key}` } });
      if (!r.ok) throw new Error(`${p}: ${r.status} ${await r.text()}`);
      return (await r.json()) as T;
    };

    // One finalized invoice per customer, for a period that ended after the demo started.
    const heads = (await api<{ items: Invoice[] }>('/api/v1/invoices?status=finalized')).items;
    expect(heads.map((h) => h.customer).sort()).toEqual(['acme', 'globex', 'initech']);
    const periodEnd = heads[0]!.periodEnd;
    for (const h of heads) {
      expect(h.status).toBe('finalized');
      expect(h.periodEnd).toBe(periodEnd);
    }
    expect(Date.parse(periodEnd)).toBeGreaterThan(startedAt);
    expect(Date.parse(periodEnd)).toBeLessThan(Date.now());

    // Its usage lines carry every event the demo sent in the period, but not the late one (sent for acme after the cutoff).
    for (const h of heads) {
      const inv = await api<Invoice>(`/api/v1/invoices/${h.id}`);
      const sent = sentBy(h.customer);
      expect(sent.calls).toBeGreaterThan(0);
      expect(usage(inv, 'api-calls').toFixed()).toBe(String(sent.calls));
      expect(usage(inv, 'llm-tokens').toFixed()).toBe(sent.tokens.toFixed());
    }

    // The late event (acme, inside the closed period, ingested after its cutoff) is a correction on the next invoice.
    type Projected = { subscriptions: { soFar: Invoice }[] };
    const corrections = async (customer: string) =>
      (await api<Projected>(`/api/v1/customers/${customer}/projected-invoice`)).subscriptions
        .filter((s) => s.soFar.periodStart === periodEnd)
        .flatMap((s) => s.soFar.lines.filter((l) => l.kind === 'correction'));
    const acme = await corrections('acme');
    expect(acme).toHaveLength(1);
    expect(acme[0]).toMatchObject({ meter: 'llm-tokens', quantity: String(LATE_TOKENS), periodEnd });
    expect(new Decimal(acme[0]!.amount).gt(0)).toBe(true);
    expect(await corrections('globex')).toEqual([]);
    expect(await corrections('initech')).toEqual([]);
  }, 300_000);
});
