import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../common/nats-server.ts';
import { eventually } from './harness.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * `meterline start` as a separate OS process (so it can be killed with SIGKILL), on the test's
 * nats-server and its own state folder. It owns its embedded ClickHouse; the test reads usage
 * through its HTTP API, as a user would.
 */
export class MeterlineProcess {
  child: ChildProcess | undefined;
  url = '';
  output = '';

  constructor(
    readonly env: Record<string, string>,
    readonly stateDir: string,
  ) {}

  async start(): Promise<void> {
    const port = await freePort();
    this.url = `http://127.0.0.1:${port}`;
    this.child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'cli/main.ts'), 'start'], {
      cwd: ROOT,
      env: { ...process.env, ...this.env, PORT: String(port), METERLINE_STATE_DIR: this.stateDir, LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (b: Buffer) => (this.output = (this.output + b.toString()).slice(-20_000));
    this.child.stdout!.on('data', keep);
    this.child.stderr!.on('data', keep);
    await eventually(
      async () => (await fetch(`${this.url}/readyz`)).status,
      (s) => s === 200,
      60_000,
    ).catch((err) => {
      throw new Error(`meterline did not become ready: ${String(err)}\n${this.output}`);
    });
  }

  get adminKey(): string {
    return fs.readFileSync(path.join(this.stateDir, 'admin-key'), 'utf8').trim();
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill(signal);
    await exited;
  }

  async api<T>(pathAndQuery: string): Promise<T> {
    const r = await fetch(`${this.url}${pathAndQuery}`, { headers: { authorization: `Bearer ${this.adminKey}` } });
    if (!r.ok) throw new Error(`${pathAndQuery}: ${r.status} ${await r.text()}`);
    return (await r.json()) as T;
  }

  async post(pathAndQuery: string, body: unknown): Promise<Response> {
    return fetch(`${this.url}${pathAndQuery}`, { method: 'POST', headers: { authorization: `Bearer ${this.adminKey}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  }
}
