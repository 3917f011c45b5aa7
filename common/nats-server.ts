import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { AppError } from './errors.ts';

/**
 * A local `nats-server` with JetStream, owned by this process: the embedded default of
 * `meterline start` and the harness every integration test uses (the way nats.js's own
 * tests spawn one). Data lives in `storeDir`, so a restart on the same port and directory
 * keeps every stored message.
 */
export interface NatsServerHandle {
  url: string;
  port: number;
  storeDir: string;
  /** The running nats-server's pid (it changes when a supervised server is restarted). */
  readonly pid: number | undefined;
  /** False between an unexpected exit and the restart of a supervised server (and after stop). */
  readonly running: boolean;
  /** How many times a supervised server was restarted after dying on its own. */
  readonly restarts: number;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

export function natsServerInstalled(bin = 'nats-server'): boolean {
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  return r.status === 0;
}

export const NATS_INSTALL_HINT =
  'nats-server is not installed. Install it with `sudo apt-get install -y nats-server` (Debian/Ubuntu), ' +
  'or download it from the NATS releases page, or point Meterline at a running server with NATS_URL=nats://host:4222.';

export interface NatsServerOptions {
  storeDir: string;
  port?: number;
  bin?: string;
  maxPayloadBytes?: number;
  /** Member of a cluster: its name, this node's name and route port, and the other nodes' route ports. */
  cluster?: { name: string; serverName: string; port: number; routes: number[] };
  /** JetStream's fsync interval (nats-server ≥ 2.10; e.g. `always`); the server's default (2m) if unset. */
  syncInterval?: string;
  /** The server is killed when this process dies, however it dies (Linux; default true). */
  dieWithParent?: boolean;
  /** Restart the server when it dies on its own (see NatsSupervision); unset: it stays down. */
  supervise?: NatsSupervision;
}

/**
 * Restart the server when it exits on its own (never after `stop()`): on the same port and
 * store, after 0.5 s, doubling to 10 s while starts keep failing. The callbacks say what happened.
 */
export interface NatsSupervision {
  onExit?(e: { pid: number | undefined; code: number | null; signal: NodeJS.Signals | null; stderr: string }): void;
  onRestart?(e: { pid: number | undefined; restarts: number }): void;
  onRestartFailed?(e: { err: unknown; attempt: number; retryInMs: number }): void;
}

/** The configuration file a server on `storeDir` runs with: it is on the server's command line. */
export function natsConfPath(storeDir: string): string {
  return path.join(path.resolve(storeDir), 'nats-server.conf');
}

let setprivPath: string | null | undefined;
/** util-linux's setpriv (Essential on Debian), which runs a program with a parent-death signal. */
function setpriv(): string | null {
  if (setprivPath !== undefined) return setprivPath;
  setprivPath = null;
  if (process.platform !== 'linux') return setprivPath;
  for (const p of ['/usr/bin/setpriv', '/bin/setpriv', '/usr/sbin/setpriv']) {
    if (spawnSync(p, ['--pdeathsig', 'SIGKILL', '--', 'true']).status === 0) return (setprivPath = p);
  }
  return setprivPath;
}

/**
 * Spawns `bin args` so it dies with this process, even when this process is killed with SIGKILL
 * (a signal nothing can catch): on Linux through `setpriv --pdeathsig SIGTERM`, which sets the
 * kernel's parent-death signal and then execs the program (same pid, same command line). The
 * signal fires when the spawning *thread* exits: call this from the main thread, as Meterline does.
 *
 * SIGTERM, not SIGKILL: nats-server acknowledges a stored message once it is in its file store's
 * write buffer, which it flushes to the file a moment later; on SIGTERM it shuts down cleanly and
 * flushes, on SIGKILL the last acknowledged messages (a 202'd batch, a write-ledger entry) could
 * be lost. A restart waits for the old server to be gone (`terminateProcess`).
 */
function spawnTied(bin: string, args: string[], dieWithParent: boolean): ChildProcess {
  const sp = dieWithParent ? setpriv() : null;
  return sp ? spawn(sp, ['--pdeathsig', 'SIGTERM', '--', bin, ...args], { stdio: ['ignore', 'ignore', 'pipe'] }) : spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export async function startNatsServer(opts: NatsServerOptions): Promise<NatsServerHandle> {
  const bin = opts.bin ?? 'nats-server';
  if (!natsServerInstalled(bin)) throw new AppError('CONFIG_INVALID', NATS_INSTALL_HINT);
  const port = opts.port ?? (await freePort());
  fs.mkdirSync(opts.storeDir, { recursive: true });
  const confPath = natsConfPath(opts.storeDir);
  // max_payload is raised so a full 1 MiB HTTP batch plus headers fits one message.
  fs.writeFileSync(
    confPath,
    [
      `listen: 127.0.0.1:${port}`,
      `max_payload: ${opts.maxPayloadBytes ?? 8 * 1024 * 1024}`,
      `jetstream {`,
      `  store_dir: ${JSON.stringify(opts.storeDir)}`,
      ...(opts.syncInterval ? [`  sync_interval: ${opts.syncInterval}`] : []),
      `}`,
      ...(opts.cluster
        ? [
            `server_name: ${opts.cluster.serverName}`,
            `cluster {`,
            `  name: ${opts.cluster.name}`,
            `  listen: 127.0.0.1:${opts.cluster.port}`,
            `  routes: [${opts.cluster.routes.map((p) => `nats-route://127.0.0.1:${p}`).join(', ')}]`,
            `}`,
          ]
        : []),
      '',
    ].join('\n'),
  );
  const launch = async (): Promise<{ child: ChildProcess; stderr: () => string }> => {
    const child = spawnTied(bin, ['-c', confPath], opts.dieWithParent ?? true);
    let stderr = '';
    child.stderr?.on('data', (b: Buffer) => {
      stderr = (stderr + b.toString()).slice(-8192);
    });
    child.once('error', () => {
      /* reported as an exit below */
    });
    await waitForNats(port, 15_000, () => child.exitCode !== null || child.signalCode !== null).catch((err) => {
      child.kill('SIGKILL');
      throw new AppError('CONFIG_INVALID', `nats-server did not start on port ${port}: ${String(err)}\n${stderr}`);
    });
    return { child, stderr: () => stderr };
  };

  let current = await launch();
  let running = true;
  let stopping = false;
  let restarts = 0;
  let wake: (() => void) | undefined;
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  const exitOf = (child: ChildProcess) =>
    child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const watch = (proc: typeof current) => {
    proc.child.once('exit', (code, signal) => {
      if (stopping || proc !== current) return;
      running = false;
      opts.supervise?.onExit?.({ pid: proc.child.pid, code, signal, stderr: proc.stderr() });
      if (opts.supervise) void restart();
    });
  };
  const restart = async () => {
    for (let attempt = 1; !stopping; attempt++) {
      const delay = Math.min(10_000, 500 * 2 ** (attempt - 1));
      await sleep(delay);
      if (stopping) return;
      try {
        const next = await launch();
        if (stopping) {
          next.child.kill('SIGTERM');
          return;
        }
        current = next;
        running = true;
        restarts++;
        watch(next);
        opts.supervise?.onRestart?.({ pid: next.child.pid, restarts });
        return;
      } catch (err) {
        opts.supervise?.onRestartFailed?.({ err, attempt, retryInMs: Math.min(10_000, 500 * 2 ** attempt) });
      }
    }
  };
  watch(current);

  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir: opts.storeDir,
    get pid() {
      return current.child.pid;
    },
    get running() {
      return running;
    },
    get restarts() {
      return restarts;
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      stopping = true;
      running = false;
      wake?.();
      const child = current.child;
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = exitOf(child);
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * Waits until a NATS server answers on `port`: it connects and reads the server's INFO line, so
 * another program listening there is not taken for nats-server.
 */
async function waitForNats(port: number, timeoutMs: number, gaveUp: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (gaveUp()) throw new Error('process exited');
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      let got = '';
      const done = (v: boolean) => {
        clearTimeout(timer);
        s.destroy();
        resolve(v);
      };
      const timer = setTimeout(() => done(false), 1_000);
      s.on('data', (b: Buffer) => {
        got += b.toString('latin1');
        if (got.length >= 5) done(got.startsWith('INFO '));
      });
      s.once('error', () => done(false));
      s.once('close', () => done(false));
    });
    if (ok) return;
    if (gaveUp()) throw new Error('process exited');
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A process found by scanning /proc. */
export interface ProcInfo {
  pid: number;
  ppid: number;
  argv: string[];
}

/** The command line of a live process (Linux /proc), or undefined if it is gone or unreadable. */
export function procInfo(pid: number): ProcInfo | undefined {
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
    if (argv.length === 0) return undefined; // a zombie or a kernel thread
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // pid (comm) state ppid ...: comm may contain spaces and parentheses; it ends at the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    return { pid, ppid, argv };
  } catch {
    return undefined;
  }
}

/** Whether /proc describes processes here (Linux); elsewhere none of the checks below can run. */
export function procAvailable(): boolean {
  return process.platform === 'linux' && fs.existsSync('/proc/self/cmdline');
}

/** Whether `p` is a nats-server running on the store in `storeDir` (its configuration file is ours). */
export function isNatsServerOn(p: ProcInfo, storeDir: string): boolean {
  const conf = natsConfPath(storeDir);
  return path.basename(p.argv[0] ?? '').includes('nats-server') && p.argv.slice(1).some((a) => a === conf || path.resolve(a) === conf);
}

/** Every live nats-server process on the store in `storeDir` (Linux; empty elsewhere). */
export function findNatsServers(storeDir: string): ProcInfo[] {
  if (!procAvailable()) return [];
  const found: ProcInfo[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const p = procInfo(Number(name));
    if (p && isNatsServerOn(p, storeDir)) found.push(p);
  }
  return found;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
export async function terminateProcess(pid: number, graceMs = 10_000): Promise<void> {
  const alive = () => {
    try {
      process.kill(pid, 0);
      // A zombie (dead, not yet reaped by its parent) answers kill(0) but has no command line.
      return !procAvailable() || procInfo(pid) !== undefined;
    } catch {
      return false;
    }
  };
  const waitGone = async (ms: number) => {
    const deadline = Date.now() + ms;
    while (alive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    return !alive();
  };
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  if (await waitGone(graceMs)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  if (!(await waitGone(10_000))) throw new AppError('CONFIG_INVALID', `process ${pid} did not exit after SIGKILL`);
}

export interface NatsClusterHandle {
  /** Every node's client URL, comma-separated: what NATS_URL takes. */
  url: string;
  nodes: NatsServerHandle[];
  /** Stops node `i` (SIGKILL by default: a crash). */
  kill(i: number, signal?: NodeJS.Signals): Promise<void>;
  /** Starts node `i` again on its ports and data folder; it catches up from the others. */
  restart(i: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A cluster of `size` nats-server processes on loopback, routed to each other, with JetStream:
 * streams and KV buckets created with NATS_REPLICAS=3 are replicated on three of them (R3).
 * For tests and demos of what a production cluster does; see deploy/ for real deployments.
 */
export async function startNatsCluster(opts: { dir: string; size?: number; bin?: string; syncInterval?: string; name?: string }): Promise<NatsClusterHandle> {
  const size = opts.size ?? 3;
  const clientPorts: number[] = [];
  const routePorts: number[] = [];
  for (let i = 0; i < size; i++) {
    clientPorts.push(await freePort());
    routePorts.push(await freePort());
  }
  const nodeOpts = (i: number): NatsServerOptions => ({
    storeDir: path.join(opts.dir, `n${i + 1}`),
    port: clientPorts[i],
    bin: opts.bin,
    syncInterval: opts.syncInterval,
    cluster: { name: opts.name ?? 'meterline', serverName: `n${i + 1}`, port: routePorts[i]!, routes: routePorts.filter((_, j) => j !== i) },
  });
  const nodes = await Promise.all(clientPorts.map((_, i) => startNatsServer(nodeOpts(i))));
  const handle: NatsClusterHandle = {
    url: nodes.map((n) => n.url).join(','),
    nodes,
    async kill(i, signal = 'SIGKILL') {
      await nodes[i]!.stop(signal);
    },
    async restart(i) {
      nodes[i] = await startNatsServer(nodeOpts(i));
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
  await waitForJetStreamCluster(handle.nodes[0]!.port, size);
  return handle;
}

/** Waits until the cluster has elected its JetStream meta leader (streams can be created then). */
async function waitForJetStreamCluster(port: number, size: number, timeoutMs = 30_000): Promise<void> {
  const { connect } = await import('@nats-io/transport-node');
  const nc = await connect({ servers: `nats://127.0.0.1:${port}` });
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const r = await nc.request('$JS.API.INFO', undefined, { timeout: 2_000 });
        const info = r.json<{ error?: unknown; cluster?: { leader?: string } }>();
        if (!info.error) return;
      } catch {
        /* not ready yet */
      }
      if (Date.now() > deadline) throw new AppError('CONFIG_INVALID', `the ${size}-node NATS cluster elected no JetStream leader within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    await nc.close();
  }
}
