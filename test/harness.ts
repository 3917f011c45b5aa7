import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { loadConfig, type Config } from '../common/config.ts';
import { silentLogger } from '../common/logger.ts';
import { natsServerInstalled, NATS_INSTALL_HINT, startNatsServer, type NatsServerHandle } from '../common/nats-server.ts';
import { startRuntime, type Role, type Runtime } from '../cli/runtime.ts';

/**
 * Integration-test harness: a real nats-server on a free port with a temp directory, and
 * real ClickHouse (embedded chDB in a folder shared by this test process, or CLICKHOUSE_URL),
 * with a fresh database per runtime. A missing service fails the test; nothing is mocked.
 */
export function tempDir(prefix = 'meterline-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** One chDB folder per test process: chDB allows one data path per process. */
export const CHDB_DIR = path.join(os.tmpdir(), `meterline-test-chdb-${process.pid}`);

export async function startTestNats(storeDir = tempDir('meterline-nats-'), port?: number): Promise<NatsServerHandle> {
  if (!natsServerInstalled()) throw new Error(NATS_INSTALL_HINT);
  return startNatsServer({ storeDir, port });
}

export function randomDatabase(): string {
  return `test_${randomBytes(6).toString('hex')}`;
}

export function testConfig(natsUrl: string, overrides: Record<string, string> = {}): Config {
  return loadConfig({
    METERLINE_STATE_DIR: tempDir('meterline-state-'),
    NATS_URL: natsUrl,
    CLICKHOUSE_URL: process.env.CLICKHOUSE_URL,
    CLICKHOUSE_USER: process.env.CLICKHOUSE_USER,
    CLICKHOUSE_PASSWORD: process.env.CLICKHOUSE_PASSWORD,
    CLICKHOUSE_DATA_DIR: CHDB_DIR,
    CLICKHOUSE_DATABASE: randomDatabase(),
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'silent',
    ...overrides,
  });
}

export interface TestRuntime extends Runtime {
  adminKey: string;
  /** Creates a key with the given scopes and returns it. */
  key(...scopes: ('ingest' | 'read' | 'billing' | 'admin')[]): Promise<string>;
}

export async function startTestRuntime(config: Config, roles: readonly Role[] = ['ingest', 'processor', 'api'], opts: { now?: () => number } = {}): Promise<TestRuntime> {
  const rt = await startRuntime(config, roles, silentLogger(), opts);
  const adminKey = rt.firstAdminKey ?? (await rt.keys.create('test admin', ['admin'])).key;
  return Object.assign(rt, {
    adminKey,
    key: async (...scopes: ('ingest' | 'read' | 'billing' | 'admin')[]) => (await rt.keys.create(`test ${scopes.join('+')}`, scopes)).key,
  });
}

/**
 * The processor's clock, for a test that takes billing cutoffs between batches: `cut()` returns
 * now, and every `ingested_at` stamped after it is later than it (the clock never returns it
 * again). So a cutoff separates the batches before and after it without sleeping; it otherwise
 * runs with the wall clock.
 */
export function cutoffClock(): { now: () => number; cut: () => number } {
  let floorMs = 0;
  return {
    now: () => Math.max(Date.now(), floorMs),
    cut: () => {
      const t = Math.max(Date.now(), floorMs);
      floorMs = t + 1;
      return t;
    },
  };
}

/** Polls `fn` until it returns a value for which `done` holds, or fails after `timeoutMs` with the last value. */
export async function eventually<T>(fn: () => Promise<T>, done: (v: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (done(last)) return last;
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`condition not met within ${timeoutMs} ms; last value: ${JSON.stringify(last)}${lastErr ? `; last error: ${String(lastErr)}` : ''}`);
}

export interface CloudEventInput {
  id: string;
  source?: string;
  type: string;
  subject: string;
  time?: string;
  data?: Record<string, unknown>;
}

export function ce(e: CloudEventInput) {
  return { specversion: '1.0', source: 'test', ...e };
}
