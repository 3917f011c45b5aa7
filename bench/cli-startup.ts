/**
 * How long the `meterline` command takes to start, by the way bin/meterline.mjs loads the CLI:
 *
 *   bundle    the esbuild bundle dist/meterline.mjs (deploy/build.mjs builds it first);
 *   tsx       TypeScript compiled at start by tsx, with its compile cache warm (METERLINE_TSX=1:
 *             the only path before the bundle existed);
 *   tsx-cold  the same with an empty tsx cache (a fresh TMPDIR per run): the first command after
 *             an install or an upgrade.
 *
 * For each path: `meterline --version`, `--help` and `meters --help` (spawned --runs times,
 * wall clock from spawn to exit), and `meterline start` with the embedded defaults (nats-server
 * and chDB, a fresh state folder and free port per run) from spawn until GET /readyz answers
 * 200 (--start-runs times; each is then stopped with SIGINT).
 *
 *   node --import tsx bench/cli-startup.ts [--runs 10] [--start-runs 5] [--paths bundle,tsx,tsx-cold] [--out file.md]
 *
 * Prints a markdown table (mean ± standard deviation, min–max, runs) to stdout; --out also
 * writes it to a file. Results: bench/results/cli-startup.md.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from '../common/nats-server.ts';
import { machine, ROOT } from './lib.ts';

const Paths = ['bundle', 'tsx', 'tsx-cold'] as const;
type LoadPath = (typeof Paths)[number];
const COMMANDS = [['--version'], ['--help'], ['meters', '--help']];
const BIN = path.join(ROOT, 'bin', 'meterline.mjs');
const READY_TIMEOUT_MS = 120_000;

const USAGE = `Usage: node --import tsx bench/cli-startup.ts [options]

Measures the start-up of the meterline command (bin/meterline.mjs) by load path.

Options:
  --runs <n>         runs of each short command per path (default 10)
  --start-runs <n>   runs of \`meterline start\` until /readyz per path (default 5; 0 skips)
  --paths <list>     comma-separated, of ${Paths.join(', ')} (default all)
  --out <file>       also write the markdown table to this file
  -h, --help         this help
`;

interface Stats {
  n: number;
  meanMs: number;
  sdMs: number;
  minMs: number;
  maxMs: number;
}

function stats(samples: number[]): Stats {
  const n = samples.length;
  const mean = samples.reduce((a, b) => a + b, 0) / n;
  const sd = n > 1 ? Math.sqrt(samples.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return { n, meanMs: mean, sdMs: sd, minMs: Math.min(...samples), maxMs: Math.max(...samples) };
}

/** The environment of one run on a path; `scratch` is a folder the run may use and lose. */
function pathEnv(p: LoadPath, scratch: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  delete env.METERLINE_TSX;
  if (p !== 'bundle') env.METERLINE_TSX = '1';
  if (p === 'tsx-cold') env.TMPDIR = fs.mkdtempSync(path.join(scratch, 'tmp-'));
  return env;
}

function timeCommand(p: LoadPath, args: string[], scratch: string): number {
  const env = pathEnv(p, scratch);
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, env, encoding: 'utf8' });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`meterline ${args.join(' ')} (${p}) exited ${r.status}: ${r.stderr}`);
  return ms;
}

/** Spawn `meterline start` on a fresh state folder; milliseconds until /readyz answers 200. */
async function timeStart(p: LoadPath, scratch: string): Promise<number> {
  const stateDir = fs.mkdtempSync(path.join(scratch, 'state-'));
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...pathEnv(p, scratch), PORT: String(port), METERLINE_STATE_DIR: stateDir, LOG_LEVEL: 'warn' };
  for (const k of ['NATS_URL', 'CLICKHOUSE_URL', 'CLICKHOUSE_DATA_DIR', 'METERLINE_API_KEY', 'BILLING_GRACE']) delete env[k];
  const t0 = performance.now();
  const child = spawn(process.execPath, [BIN, 'start'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (b: Buffer) => (output = (output + b.toString()).slice(-10_000));
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`meterline start (${p}) exited ${child.exitCode}:\n${output}`);
      if (performance.now() - t0 > READY_TIMEOUT_MS) throw new Error(`meterline start (${p}) not ready in ${READY_TIMEOUT_MS} ms:\n${output}`);
      const ok = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status === 200, () => false);
      if (ok) return performance.now() - t0;
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
    await exited;
  }
}

const fmt = (s: Stats) => `${(s.meanMs / 1000).toFixed(3)} s ± ${(s.sdMs / 1000).toFixed(3)}`;
const range = (s: Stats) => `${(s.minMs / 1000).toFixed(3)}–${(s.maxMs / 1000).toFixed(3)} s`;

async function main() {
  const { values: argv } = parseArgs({
    options: { runs: { type: 'string', default: '10' }, 'start-runs': { type: 'string', default: '5' }, paths: { type: 'string', default: Paths.join(',') }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (argv.help) {
    process.stdout.write(USAGE);
    return;
  }
  const runs = Number(argv.runs);
  const startRuns = Number(argv['start-runs']);
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs: give a whole number of at least 1');
  if (!Number.isInteger(startRuns) || startRuns < 0) throw new Error('--start-runs: give a whole number, 0 or more');
  const paths = argv.paths.split(',').map((s) => s.trim());
  for (const p of paths) if (!(Paths as readonly string[]).includes(p)) throw new Error(`--paths: ${p} is not one of ${Paths.join(', ')}`);

  if (paths.includes('bundle')) {
    const b = spawnSync(process.execPath, [path.join(ROOT, 'deploy', 'build.mjs')], { cwd: ROOT, stdio: 'inherit' });
    if (b.status !== 0) throw new Error('deploy/build.mjs failed; see above');
  }
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'meterline-cli-startup-'));
  const rows: [string, string, Stats][] = [];
  // The paths take turns run by run, so a change in the machine's load (it is shared) falls on all of them alike.
  const measure = async (what: string, once: (p: LoadPath) => Promise<number>, n: number) => {
    const samples = new Map<LoadPath, number[]>(paths.map((p) => [p as LoadPath, []]));
    for (let i = 0; i < n; i++) for (const p of paths as LoadPath[]) samples.get(p)!.push(await once(p));
    for (const [p, s] of samples) {
      rows.push([what, p, stats(s)]);
      process.stderr.write(`${p}: ${what}: ${fmt(rows.at(-1)![2])}\n`);
    }
  };
  try {
    // One untimed run per path: the page cache holds node_modules and tsx's cache is warm, as for a user.
    for (const p of paths as LoadPath[]) timeCommand(p, ['--version'], scratch);
    for (const args of COMMANDS) await measure(`meterline ${args.join(' ')}`, async (p) => timeCommand(p, args, scratch), runs);
    if (startRuns > 0) await measure('meterline start → /readyz 200', (p) => timeStart(p, scratch), startRuns);
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }

  const m = machine();
  const table = [
    `Paths measured in turns, run by run. Machine: ${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB, Node ${m.node}, ${m.os}; load average at the end ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}.`,
    '',
    '| what | path | mean ± sd | min–max | runs |',
    '|---|---|---|---|---|',
    ...rows.map(([what, p, s]) => `| \`${what}\` | ${p} | ${fmt(s)} | ${range(s)} | ${s.n} |`),
  ];
  const speedups = COMMANDS.map((a) => `meterline ${a.join(' ')}`)
    .concat('meterline start → /readyz 200')
    .flatMap((what) => {
      const b = rows.find((r) => r[0] === what && r[1] === 'bundle')?.[2];
      const t = rows.find((r) => r[0] === what && r[1] === 'tsx')?.[2];
      return b && t ? [`${what}: the bundle saves ${((t.meanMs - b.meanMs) / 1000).toFixed(3)} s (${(t.meanMs / b.meanMs).toFixed(1)}× faster than tsx)`] : [];
    });
  const text = [...table, '', ...speedups.map((s) => `- ${s}`)].join('\n') + '\n';
  process.stdout.write(text);
  if (argv.out) fs.writeFileSync(argv.out, text);
}

main().catch((err: unknown) => {
  process.stderr.write(`cli-startup: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
