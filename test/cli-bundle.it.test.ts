import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../common/nats-server.ts';
import { eventually } from './harness.ts';

// bin/meterline.mjs runs the bundle dist/meterline.mjs (deploy/build.mjs) only while it is up to
// date with the sources, else the TypeScript on disk through tsx. Each test works in a copy of
// the checkout (node_modules linked), so editing a source there touches nobody's work and the
// edits of others cannot make the bundle stale mid-test.
const ROOT = path.resolve(import.meta.dirname, '..');
const SKIP = new Set(['node_modules', '.git', 'dist', '.meterline']);
const FALLBACK = 'so the TypeScript runs through tsx';

let copy = '';
const node = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  spawnSync(process.execPath, args, { cwd: copy, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', ...env, METERLINE_TSX: undefined } });
const meterline = (...args: string[]) => node([path.join(copy, 'bin', 'meterline.mjs'), ...args]);
const buildInfo = () => JSON.parse(fs.readFileSync(path.join(copy, 'dist', 'build-info.json'), 'utf8')) as { startedAtMs: number; inputs: string[]; outputs: string[] };

beforeAll(() => {
  copy = fs.mkdtempSync(path.join(os.tmpdir(), 'meterline-bundle-'));
  for (const name of fs.readdirSync(ROOT)) if (!SKIP.has(name)) fs.cpSync(path.join(ROOT, name), path.join(copy, name), { recursive: true });
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(copy, 'node_modules'));
  const b = node([path.join(copy, 'deploy', 'build.mjs')]);
  expect(b.status, b.stderr).toBe(0);
});

afterAll(() => {
  if (copy) fs.rmSync(copy, { recursive: true, force: true });
});

describe('the CLI bundle', () => {
  it('runs `meterline start` with its migrations (sql/) and dashboard (web/) found from dist/', async () => {
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'meterline-bundle-state-'));
    const port = await freePort();
    const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port), METERLINE_STATE_DIR: stateDir, LOG_LEVEL: 'warn' };
    for (const k of ['NATS_URL', 'CLICKHOUSE_URL', 'CLICKHOUSE_DATA_DIR', 'METERLINE_API_KEY', 'METERLINE_TSX']) delete env[k];
    const child = spawn(process.execPath, [path.join(copy, 'bin', 'meterline.mjs'), 'start'], { cwd: copy, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (b: Buffer) => (output += b.toString()));
    child.stderr.on('data', (b: Buffer) => (output += b.toString()));
    const exited = new Promise((r) => child.once('exit', r));
    try {
      const url = `http://127.0.0.1:${port}`;
      await eventually(async () => (await fetch(`${url}/readyz`).catch(() => undefined))?.status, (s) => s === 200, 90_000).catch((err: unknown) => {
        throw new Error(`${String(err)}\n${output}`);
      });
      expect(output).not.toContain(FALLBACK);
      const page = await fetch(`${url}/ui/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('<html');
      const app = await fetch(`${url}/ui/assets/app.js`);
      expect(app.status).toBe(200);
      // The migrations of sql/ ran: the API answers a query on the tables they create.
      const key = fs.readFileSync(path.join(stateDir, 'admin-key'), 'utf8').trim();
      const reconcile = await fetch(`${url}/api/v1/reconcile?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z`, { headers: { authorization: `Bearer ${key}` } });
      expect(reconcile.status, await reconcile.clone().text()).toBe(200);
    } finally {
      child.kill('SIGINT');
      await exited;
      fs.rmSync(stateDir, { recursive: true, force: true });
    }
  }, 150_000);

  it('maps to the .ts sources', () => {
    const map = JSON.parse(fs.readFileSync(path.join(copy, 'dist', 'meterline.mjs.map'), 'utf8')) as { sources: string[] };
    expect(map.sources).toContain('../cli/main.ts');
    expect(fs.readFileSync(path.join(copy, 'dist', 'meterline.mjs'), 'utf8')).toMatch(/\/\/# sourceMappingURL=meterline\.mjs\.map\s*$/);
  });

  it('is used while fresh; a source newer than it runs through tsx, never the old bundle, until rebuilt', () => {
    const main = path.join(copy, 'cli', 'main.ts');
    const marker = `edited-${process.pid}-${Date.now()}`;
    const before = meterline('--help');
    expect(before.status, before.stderr).toBe(0);
    expect(before.stderr).not.toContain(FALLBACK);

    // The source changes but keeps an mtime older than the build: the launcher trusts the
    // bundle, so the help is the bundle's (without the marker). Proves the bundle is what runs.
    const source = fs.readFileSync(main, 'utf8');
    expect(source).toContain(".description('Usage metering");
    fs.writeFileSync(main, source.replace(".description('Usage metering", `.description('${marker} Usage metering`));
    const old = new Date(buildInfo().startedAtMs - 60_000);
    fs.utimesSync(main, old, old);
    const fromBundle = meterline('--help');
    expect(fromBundle.status, fromBundle.stderr).toBe(0);
    expect(fromBundle.stdout).not.toContain(marker);
    expect(fromBundle.stderr).not.toContain(FALLBACK);

    // Now the source is newer than the bundle: the code on disk runs, after one line saying so.
    const now = new Date();
    fs.utimesSync(main, now, now);
    const stale = meterline('--help');
    expect(stale.status, stale.stderr).toBe(0);
    expect(stale.stdout).toContain(marker);
    expect(stale.stderr.split('\n').filter((l) => l.includes(FALLBACK))).toEqual([expect.stringContaining('cli/main.ts changed after the CLI bundle was built')]);
    expect(stale.stderr).toContain('node deploy/build.mjs');
    const check = node([path.join(copy, 'deploy', 'build.mjs'), '--check']);
    expect(check.status).toBe(1);
    expect(check.stderr).toContain('cli/main.ts changed');

    // Rebuilt: the bundle holds the edit and runs again.
    const rebuild = node([path.join(copy, 'deploy', 'build.mjs')]);
    expect(rebuild.status, rebuild.stderr).toBe(0);
    expect(rebuild.stderr).toContain('built dist/meterline.mjs');
    const after = meterline('--help');
    expect(after.stdout).toContain(marker);
    expect(after.stderr).not.toContain(FALLBACK);
  }, 120_000);

  it('builds nothing when up to date, and a missing bundle falls back to tsx', () => {
    const entry = path.join(copy, 'dist', 'meterline.mjs');
    const b = node([path.join(copy, 'deploy', 'build.mjs')]);
    expect(b.status, b.stderr).toBe(0);
    const mtimeMs = fs.statSync(entry).mtimeMs;
    const again = node([path.join(copy, 'deploy', 'build.mjs')]);
    expect({ status: again.status, stderr: again.stderr, mtimeMs: fs.statSync(entry).mtimeMs }).toEqual({ status: 0, stderr: '', mtimeMs });

    fs.rmSync(path.join(copy, 'dist'), { recursive: true });
    const r = meterline('--version');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe((JSON.parse(fs.readFileSync(path.join(copy, 'package.json'), 'utf8')) as { version: string }).version);
    expect(r.stderr).toContain('there is no CLI bundle');
  }, 60_000);
});
