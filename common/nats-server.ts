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
  pid: number | undefined;
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
}

export async function startNatsServer(opts: NatsServerOptions): Promise<NatsServerHandle> {
  const bin = opts.bin ?? 'nats-server';
  if (!natsServerInstalled(bin)) throw new AppError('CONFIG_INVALID', NATS_INSTALL_HINT);
  const port = opts.port ?? (await freePort());
  fs.mkdirSync(opts.storeDir, { recursive: true });
  const confPath = path.join(opts.storeDir, 'nats-server.conf');
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
  const child: ChildProcess = spawn(bin, ['-c', confPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-8192);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitForPort(port, 15_000, () => child.exitCode !== null).catch((err) => {
    child.kill('SIGKILL');
    throw new AppError('CONFIG_INVALID', `nats-server did not start on port ${port}: ${String(err)}\n${stderr}`);
  });
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir: opts.storeDir,
    pid: child.pid,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function waitForPort(port: number, timeoutMs: number, gaveUp: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (gaveUp()) throw new Error('process exited');
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
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
