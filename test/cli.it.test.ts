import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

// The `meterline` command as a user runs it: bin/meterline.mjs in a child process.
const root = path.resolve(import.meta.dirname, '..');
const meterline = (...args: string[]) => spawnSync(process.execPath, [path.join(root, 'bin', 'meterline.mjs'), ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });

describe('meterline CLI', () => {
  // Through the bundle, as after `npm start` (deploy/setup.mjs builds it; quick when up to date).
  beforeAll(() => {
    const b = spawnSync(process.execPath, [path.join(root, 'deploy', 'build.mjs')], { cwd: root, encoding: 'utf8' });
    expect(b.status, b.stderr).toBe(0);
  });

  it('--version prints the version of package.json', () => {
    const r = meterline('--version');
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe((JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version);
  });

  it('every command has --help', () => {
    const top = meterline('--help');
    expect(top.status).toBe(0);
    const commands = [...top.stdout.split('Commands:')[1]!.matchAll(/^ {2}([a-z-]+)/gm)].map((m) => m[1]!).filter((c) => c !== 'help');
    expect(commands).toEqual(expect.arrayContaining(['start', 'processor', 'close', 'rate', 'repair']));
    for (const c of commands) {
      const r = meterline(c, '--help');
      expect({ command: c, status: r.status, usage: r.stdout.startsWith(`Usage: meterline ${c}`) }).toEqual({ command: c, status: 0, usage: true });
    }
  }, 120_000);

  it('close refuses a month that does not exist before calling anything, and exits non-zero', () => {
    const r = meterline('close', '--period', '2026-13', '--url', 'http://127.0.0.1:9');
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('YYYY-MM');
  });
});
