import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsServer, type NatsServerHandle } from '../common/nats-server.ts';
import { MeterlineProcess } from './child.ts';
import { ce, eventually, tempDir } from './harness.ts';

/**
 * `meterline start` as a real OS process with its embedded nats-server: the server dies with
 * it (even on SIGKILL), a restart never runs a second server on the same store, a server that
 * dies alone comes back, and a stale runtime.json does not stop a start. Nothing is mocked; the
 * processes are found the way an operator would, in /proc.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** nats-server processes whose command line names this store's configuration file (read from /proc). */
function natsServersOn(storeDir: string): { pid: number; ppid: number }[] {
  const conf = path.join(storeDir, 'nats-server.conf');
  const found: { pid: number; ppid: number }[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (!argv[0]?.includes('nats-server') || !argv.includes(conf)) continue;
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      found.push({ pid: Number(name), ppid: Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) });
    } catch {
      /* gone meanwhile */
    }
  }
  return found;
}

function alive(pid: number): boolean {
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return argv.length > 0; // a zombie has none
  } catch {
    return false;
  }
}

async function readyz(m: MeterlineProcess): Promise<{ status: number; body: { status: string; reason?: string; checks: Record<string, boolean> } }> {
  const r = await fetch(`${m.url}/readyz`);
  return { status: r.status, body: (await r.json()) as { status: string; reason?: string; checks: Record<string, boolean> } };
}

async function restartsMetric(m: MeterlineProcess): Promise<number> {
  const r = await fetch(`${m.url}/metrics`, { headers: { authorization: `Bearer ${m.adminKey}` } });
  const line = (await r.text()).split('\n').find((l) => l.startsWith('meterline_nats_server_restarts_total '));
  return Number(line?.split(' ')[1] ?? NaN);
}

async function ingest(m: MeterlineProcess, id: string): Promise<number> {
  const r = await m.post('/api/v1/events', [ce({ id, type: 'req', subject: 'acme', time: new Date().toISOString() })]);
  return r.status;
}

async function totalReq(m: MeterlineProcess): Promise<string> {
  const r = await m.api<{ data: { value: string }[] }>('/api/v1/meters/req/query?subject=acme');
  return r.data[0]?.value ?? '0';
}

/**
 * Waits (generously: after a NATS restart the processor's subscriptions resume by their
 * heartbeats and stall watchdog, tens of seconds) until the usage total is `want`; on failure
 * the error carries Meterline's log.
 */
async function totalBecomes(m: MeterlineProcess, want: string): Promise<void> {
  await eventually(() => totalReq(m), (v) => v === want, 150_000).catch((err: unknown) => {
    throw new Error(`${String(err)}\n--- meterline output ---\n${m.output.slice(-6000)}`);
  });
}

describe('process hygiene of meterline start and its embedded nats-server', () => {
  const dir = tempDir('meterline-hygiene-');
  const stateDir = path.join(dir, 'state');
  const storeDir = path.join(stateDir, 'nats');
  // NATS_SERVER_BIN: nats-server itself (exec'd: same pid and command line), unless the test
  // has made it fail to start, to hold the server down while it checks /readyz.
  const block = path.join(dir, 'block-nats-server');
  const wrapper = path.join(dir, 'nats-server-wrapper.sh');
  fs.writeFileSync(wrapper, `#!/bin/sh\nif [ -e '${block}' ] && [ "$1" != "--version" ]; then echo 'held down by the test' >&2; exit 1; fi\nexec nats-server "$@"\n`, { mode: 0o755 });
  const env = { NATS_SERVER_BIN: wrapper, EVENT_PARTITIONS: '2' };
  let m: MeterlineProcess | undefined;
  let sleeper: ChildProcess | undefined;
  let leftover: NatsServerHandle | undefined;

  beforeAll(() => {
    fs.mkdirSync(stateDir, { recursive: true });
  });
  afterAll(async () => {
    await m?.kill('SIGTERM');
    sleeper?.kill('SIGKILL');
    await leftover?.stop('SIGKILL');
    for (const s of natsServersOn(storeDir)) process.kill(s.pid, 'SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('the embedded nats-server dies with meterline, even on SIGKILL', async () => {
    m = new MeterlineProcess(env, stateDir);
    await m.start();
    const servers = natsServersOn(storeDir);
    expect(servers).toHaveLength(1);
    expect(servers[0]!.ppid).toBe(m.child!.pid);

    await m.kill('SIGKILL');
    await eventually(async () => natsServersOn(storeDir).length, (n) => n === 0, 15_000);
  }, 120_000);

  it('a restart on the same state folder runs exactly one nats-server and is ready', async () => {
    m = new MeterlineProcess(env, stateDir);
    await m.start();
    expect(natsServersOn(storeDir)).toEqual([{ pid: expect.any(Number), ppid: m.child!.pid }]);
    expect((await readyz(m)).status).toBe(200);
    expect(await restartsMetric(m)).toBe(0);

    const meter = await m.post('/api/v1/meters', { slug: 'req', eventType: 'req', aggregation: 'COUNT' });
    expect(meter.status).toBe(201);
    expect(await ingest(m, 'before-1')).toBe(202);
    await totalBecomes(m, '1');
  }, 300_000);

  it('a nats-server that dies alone is restarted: /readyz says so meanwhile, the metric counts it, ingest resumes', async () => {
    const [old] = natsServersOn(storeDir);
    fs.writeFileSync(block, '');
    process.kill(old!.pid, 'SIGKILL');

    // Held down: not ready, with the embedded server named as the reason.
    const down = await eventually(() => readyz(m!), (r) => r.status === 503 && r.body.checks.natsServer === false, 30_000);
    expect(down.body.status).toBe('not ready');
    expect(down.body.reason).toContain('natsServer');
    await eventually(async () => m!.output, (o) => o.includes('the embedded nats-server died; restarting it'), 30_000);
    expect(await ingest(m!, 'during-1').catch(() => 0)).not.toBe(202);

    fs.rmSync(block);
    await eventually(() => readyz(m!), (r) => r.status === 200, 60_000);
    const now = natsServersOn(storeDir);
    expect(now).toHaveLength(1);
    expect(now[0]!.pid).not.toBe(old!.pid);
    expect(now[0]!.ppid).toBe(m!.child!.pid);
    expect(await restartsMetric(m!)).toBe(1);
    expect(m!.output).toContain('the embedded nats-server is running again');

    // The client reconnected by itself: events sent now are ingested and processed.
    await eventually(() => ingest(m!, 'after-1'), (s) => s === 202, 60_000);
    expect(await ingest(m!, 'after-2')).toBe(202);
    await totalBecomes(m!, '3');
  }, 300_000);

  it('a nats-server left on the store by an earlier Meterline is stopped before a new one starts', async () => {
    const info = JSON.parse(fs.readFileSync(path.join(stateDir, 'runtime.json'), 'utf8')) as { pid: number; natsUrl: string };
    await m!.kill('SIGKILL');
    await eventually(async () => natsServersOn(storeDir).length, (n) => n === 0, 15_000);
    // What a release without this fix left behind: a server on the store whose Meterline is gone
    // (here its parent is the test, not a Meterline), and that Meterline's runtime.json.
    leftover = await startNatsServer({ storeDir, port: Number(new URL(info.natsUrl).port), dieWithParent: false });
    const leftoverPid = leftover.pid!;
    expect(natsServersOn(storeDir).map((s) => s.pid)).toEqual([leftoverPid]);

    m = new MeterlineProcess(env, stateDir);
    await m.start();
    expect(alive(leftoverPid)).toBe(false);
    expect(natsServersOn(storeDir)).toEqual([{ pid: expect.any(Number), ppid: m.child!.pid }]);
    expect(m.output).toContain('stopping a nats-server left running on this store by an earlier Meterline');
    // Same store, nothing lost.
    await totalBecomes(m!, '3');
  }, 300_000);

  it('a stale runtime.json whose pid is now another program is ignored, with a log line', async () => {
    await m!.kill('SIGKILL');
    await eventually(async () => natsServersOn(storeDir).length, (n) => n === 0, 15_000);
    sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
    const runtimeJson = path.join(stateDir, 'runtime.json');
    fs.writeFileSync(runtimeJson, JSON.stringify({ pid: sleeper.pid, natsUrl: 'nats://127.0.0.1:1', httpUrl: 'http://127.0.0.1:1' }));

    m = new MeterlineProcess(env, stateDir);
    await m.start();
    expect(m.output).toContain(`ignoring a stale runtime.json: pid ${sleeper.pid} is another program now`);
    expect(natsServersOn(storeDir)).toEqual([{ pid: expect.any(Number), ppid: m.child!.pid }]);
    expect((JSON.parse(fs.readFileSync(runtimeJson, 'utf8')) as { pid: number }).pid).toBe(m.child!.pid);
    expect(alive(sleeper.pid!)).toBe(true);
    await totalBecomes(m!, '3');
  }, 300_000);

  it('a CLI command uses the running Meterline\'s nats-server: neither stops it nor starts another', async () => {
    const before = natsServersOn(storeDir);
    expect(before).toHaveLength(1);
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'cli/main.ts'), 'keys', 'list'], {
      cwd: ROOT,
      env: { ...process.env, ...env, METERLINE_STATE_DIR: stateDir, LOG_LEVEL: 'warn' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'first admin key' })]));
    expect(natsServersOn(storeDir)).toEqual(before);
    expect((await readyz(m!)).status).toBe(200);
  }, 120_000);

  it('a second `meterline start` on the same state folder says who holds the embedded ClickHouse and what to do, and leaves the first running', async () => {
    const before = natsServersOn(storeDir);
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'cli/main.ts'), 'start'], {
      cwd: ROOT,
      env: { ...process.env, ...env, METERLINE_STATE_DIR: stateDir, PORT: '0', LOG_LEVEL: 'warn' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`Meterline (pid ${m!.child!.pid}) is running on ${stateDir} and holds its embedded ClickHouse`);
    expect(r.stderr).toContain('METERLINE_STATE_DIR');
    expect(r.stderr).not.toContain('Cannot lock file');
    expect(natsServersOn(storeDir)).toEqual(before);
    expect((await readyz(m!)).status).toBe(200);
  }, 120_000);
});
