#!/usr/bin/env node
// Installs what Meterline needs on a fresh Debian/Ubuntu machine with Node 20:
//   1. npm packages when node_modules is missing or older than package-lock.json. `npm install`
//      (which keeps the versions in package-lock.json), not `npm ci`: the lock cannot list the
//      other platforms' optional binaries (chDB's, rollup's) when the registry in reach does not
//      serve them, and `npm ci` refuses such a lock;
//   2. nats-server (Debian package) when it is not on PATH and NATS_URL is not set.
// Idempotent and quiet when everything is in place. Used by `npm run demo` and `npm test`.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const say = (s) => process.stderr.write(`setup: ${s}\n`);
const run = (cmd, args, opts = {}) => spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });
const has = (cmd) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;

const [major] = process.versions.node.split('.').map(Number);
if (major < 20) {
  say(`Node ${process.versions.node} is too old; Meterline needs Node 20 or newer.`);
  process.exit(1);
}

const lock = path.join(root, 'package-lock.json');
const installed = path.join(root, 'node_modules', '.package-lock.json');
if (!fs.existsSync(installed) || fs.statSync(installed).mtimeMs < fs.statSync(lock).mtimeMs) {
  say('installing npm packages...');
  const r = run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error']);
  if (r.status !== 0) {
    say('npm install failed; see the output above.');
    process.exit(r.status ?? 1);
  }
}

if (!process.env.NATS_URL && !has(process.env.NATS_SERVER_BIN || 'nats-server')) {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  // apt-get as root, or through passwordless sudo; otherwise say how to install it.
  const prefix = isRoot ? [] : has('sudo') ? ['sudo', '-n'] : null;
  if (has('apt-get') && prefix) {
    say('installing nats-server (Debian package)...');
    const apt = (...args) => run(prefix[0] ?? 'apt-get', [...prefix.slice(1), ...(prefix.length ? ['apt-get'] : []), ...args], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    apt('update', '-qq');
    apt('install', '-y', '-qq', 'nats-server');
  }
  if (!has(process.env.NATS_SERVER_BIN || 'nats-server')) {
    say('nats-server is not installed and could not be installed automatically.');
    say('Install it with `sudo apt-get install -y nats-server`, or set NATS_URL to a running NATS server with JetStream.');
    process.exit(1);
  }
}
