#!/usr/bin/env node
// Installs what Meterline needs on a fresh Debian/Ubuntu machine with Node 20:
//   1. npm packages when node_modules is missing or older than package-lock.json. `npm install`
//      (which keeps the versions in package-lock.json), not `npm ci`: the lock cannot list the
//      other platforms' optional binaries (chDB's, rollup's) when the registry in reach does not
//      serve them, and `npm ci` refuses such a lock;
//   2. nats-server (Debian package) when it is not on PATH and NATS_URL is not set;
//   3. Chromium (Debian package, /usr/bin/chromium) for the browser tests (test/browser/), when
//      it is missing. Without root or passwordless sudo it says how to install it and goes on:
//      the browser tests then fail with the same message (they never skip silently);
//   4. the CLI bundle dist/meterline.mjs (deploy/build.mjs) when a source changed since it was
//      built, so `meterline` starts without compiling TypeScript (docs/runbook.md#start-up).
// Idempotent and quiet when everything is in place. Used by `npm start`, `npm run demo` and `npm test`.
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

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
// apt-get as root, or through passwordless sudo; null when neither is possible.
const aptPrefix = isRoot ? [] : has('sudo') && spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status === 0 ? ['sudo', '-n'] : null;
let aptUpdated = false;
const apt = (...args) => {
  const [cmd, ...pre] = aptPrefix.length ? [...aptPrefix, 'apt-get'] : ['apt-get'];
  return run(cmd, [...pre, ...args], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
};
const aptInstall = (pkg) => {
  if (!aptUpdated) apt('update', '-qq');
  aptUpdated = true;
  return apt('install', '-y', '-qq', pkg);
};

if (!process.env.NATS_URL && !has(process.env.NATS_SERVER_BIN || 'nats-server')) {
  if (has('apt-get') && aptPrefix) {
    say('installing nats-server (Debian package)...');
    aptInstall('nats-server');
  }
  if (!has(process.env.NATS_SERVER_BIN || 'nats-server')) {
    say('nats-server is not installed and could not be installed automatically.');
    say('Install it with `sudo apt-get install -y nats-server`, or set NATS_URL to a running NATS server with JetStream.');
    process.exit(1);
  }
}

const CHROMIUM = '/usr/bin/chromium';
if (!fs.existsSync(CHROMIUM)) {
  if (has('apt-get') && aptPrefix) {
    say('installing chromium (Debian package) for the browser tests...');
    aptInstall('chromium');
  }
  if (!fs.existsSync(CHROMIUM)) {
    say(`Chromium is not installed at ${CHROMIUM} and could not be installed automatically (needs root or passwordless sudo).`);
    say('Install it with `sudo apt-get install -y chromium`; until then the browser tests (test/browser/) fail.');
  }
}

// After npm install: the build needs esbuild from node_modules.
const { buildIfStale } = await import('./build.mjs');
try {
  const built = await buildIfStale();
  if (built) say(built);
} catch (err) {
  say(`building the CLI bundle failed: ${err instanceof Error ? err.message : String(err)}`);
  say('Fix the error above and run this again (or `node deploy/build.mjs`).');
  process.exit(1);
}
