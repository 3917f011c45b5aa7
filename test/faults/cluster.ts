import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../common/nats-server.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * One `meterline <role>` as its own OS process, so a scenario can SIGKILL, SIGSTOP or restart
 * it. `ready` is the text the role prints when it is up.
 */
export class RoleProcess {
  child: ChildProcess | undefined;
  output = '';
  /** When set, everything the process prints is also appended here (kept for a failed run). */
  logFile: string | undefined;
  private starts = 0;

  constructor(
    readonly label: string,
    readonly args: string[],
    readonly env: Record<string, string>,
    readonly ready: RegExp,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start(timeoutMs = 90_000): Promise<void> {
    this.starts++;
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'cli/main.ts'), ...this.args], {
      cwd: ROOT,
      env: { ...process.env, LOG_LEVEL: process.env.FAULTS_LOG_LEVEL ?? 'warn', ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const seen = this.output.length;
    const keep = (b: Buffer) => {
      this.output = (this.output + b.toString()).slice(-40_000);
      if (this.logFile) fs.appendFileSync(this.logFile, b);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    const deadline = Date.now() + timeoutMs;
    while (!this.ready.test(this.output.slice(Math.min(seen, this.output.length)))) {
      if (child.exitCode !== null) throw new Error(`${this.label} exited while starting (code ${child.exitCode}):\n${this.output.slice(-4000)}`);
      if (Date.now() > deadline) throw new Error(`${this.label} not ready within ${timeoutMs} ms:\n${this.output.slice(-4000)}`);
      await sleep(100);
    }
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const c = this.child;
    if (!c || !this.running) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill(signal);
    await exited;
  }

  signal(signal: NodeJS.Signals): void {
    if (this.running) this.child!.kill(signal);
  }

  /** Resident memory now, in MiB (Linux /proc). */
  rssMiB(): number {
    if (!this.running) return 0;
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${this.pid}/status`, 'utf8'));
      return m ? Number(m[1]) / 1024 : 0;
    } catch {
      return 0;
    }
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `meterline store` on a free port over `dataDir`; its URL is what CLICKHOUSE_URL takes. */
export async function storeProcess(dataDir: string, env: Record<string, string>): Promise<{ proc: RoleProcess; url: string }> {
  const port = await freePort();
  const proc = new RoleProcess('store', ['store', '--port', String(port), '--data-dir', dataDir], env, /CLICKHOUSE_URL=/);
  await proc.start();
  return { proc, url: `http://127.0.0.1:${port}` };
}

export function processorProcess(id: string, env: Record<string, string>): RoleProcess {
  return new RoleProcess(`processor ${id}`, ['processor'], { ...env, PROCESSOR_ID: id, PORT: '0' }, /Meterline is running \(processor\)/);
}

export async function ingestProcess(env: Record<string, string>): Promise<{ proc: RoleProcess; url: string }> {
  const port = await freePort();
  const proc = new RoleProcess('ingest', ['ingest'], { ...env, PORT: String(port) }, /Meterline is running \(ingest\)/);
  await proc.start();
  return { proc, url: `http://127.0.0.1:${port}` };
}
