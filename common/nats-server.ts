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

export async function startNatsServer(opts: { storeDir: string; port?: number; bin?: string; maxPayloadBytes?: number }): Promise<NatsServerHandle> {
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
      `}`,
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
