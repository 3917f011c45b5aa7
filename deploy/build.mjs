#!/usr/bin/env node
// Bundles the CLI (cli/main.ts and every Meterline module it imports) with esbuild into dist/,
// which bin/meterline.mjs runs instead of compiling the TypeScript through tsx at every start
// (docs/runbook.md#start-up; figures in bench/results/cli-startup.md).
//
//   node deploy/build.mjs           build when a source changed since the last build; quiet otherwise
//   node deploy/build.mjs --force   build anyway
//   node deploy/build.mjs --check   build nothing; exit 1 and say why when the bundle is not up to date
//
// deploy/setup.mjs runs it, so `npm start`, `npm run demo` and `npm test` build first.
//
// - npm packages stay external, loaded from node_modules as they are: chDB is a native module,
//   pino starts worker threads from its own files, @fastify/swagger-ui serves files from its
//   folder. Only Meterline's own TypeScript is bundled.
// - Code splitting: every import() in cli/main.ts is a chunk of its own, loaded when a command
//   needs it, so `--help` never loads fastify, NATS, chDB or Stripe. Chunk names carry a hash
//   of their content, and chunks of earlier builds stay for a while (PRUNE_AFTER_MS): a process
//   started from an earlier build can still load its chunks after a rebuild.
// - Meterline's own modules are marked free of import-time side effects, so esbuild leaves out
//   the modules (and their npm imports) that a chunk imports but does not use: cli/main.ts
//   takes `Scopes` from api/index.ts without loading fastify. No Meterline module may rely on
//   being imported for its effects alone (`import './x.ts'`); the build fails if one is.
// - Every output sits directly in dist/, one level below the root like the source folders, so
//   paths found from `import.meta.url` (`../sql`, `../web`, `../package.json`) still resolve.
// - Linked source maps (no sources content: the .ts files are beside them): bin/meterline.mjs
//   turns source maps on, so stack traces name the .ts files and their lines.
// - Files are written under a temporary name and renamed, the entry point and build-info.json
//   last: a `meterline` that starts during a build runs either build, complete, or falls back
//   to tsx. Two builds at once write the same files.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BUILD_INFO, BUILD_INFO_FORMAT, bundleState, DIST, ENTRY, ROOT } from '../bin/bundle-state.mjs';

const THIS_FILE = fileURLToPath(import.meta.url);
/** Inputs of every build besides the modules esbuild reads: the build's own configuration. */
const CONFIG_INPUTS = ['deploy/build.mjs', 'bin/bundle-state.mjs', 'tsconfig.json'];
/** Chunks of earlier builds are deleted once this old (a process started before a rebuild may still load its own). */
const PRUNE_AFTER_MS = 24 * 60 * 60 * 1000;

const rel = (p) => path.relative(ROOT, p).split(path.sep).join('/');

/** esbuild plugin: Meterline's own modules have no import-time effects worth keeping unused. */
const ownModulesArePure = {
  name: 'meterline-own-modules-are-pure',
  setup(build) {
    build.onResolve({ filter: /^\.\.?\/.*\.ts$/ }, (args) => {
      const file = path.resolve(args.resolveDir, args.path);
      if (file.includes(`${path.sep}node_modules${path.sep}`)) return undefined;
      return { path: file, sideEffects: false };
    });
  },
};

/** Writes `contents` to `file` atomically (a temporary name in the same folder, then rename). */
function writeAtomic(file, contents) {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, contents);
  fs.renameSync(tmp, file);
}

/** Deletes what earlier builds left in dist/ that this one did not write, once old enough. */
function pruneOldOutputs(written, nowMs) {
  for (const name of fs.readdirSync(DIST)) {
    const file = path.join(DIST, name);
    if (written.has(file)) continue;
    const stale = name.endsWith('.tmp') || /\.mjs(\.map)?$/.test(name);
    if (stale && nowMs - fs.statSync(file).mtimeMs > PRUNE_AFTER_MS) fs.rmSync(file, { force: true });
  }
}

/** Bundles cli/main.ts into dist/ and records its inputs and outputs in dist/build-info.json. */
export async function build() {
  const startedAtMs = Date.now();
  const esbuild = await import('esbuild');
  const result = await esbuild.build({
    absWorkingDir: ROOT,
    entryPoints: { meterline: 'cli/main.ts' },
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    outdir: DIST,
    entryNames: '[name]',
    chunkNames: '[name]-[hash]',
    outExtension: { '.js': '.mjs' },
    sourcemap: 'linked',
    sourcesContent: false,
    // Class and function names as in the sources (`err.name`, logs, stack traces), not renamed apart.
    keepNames: true,
    metafile: true,
    write: false,
    logLevel: 'silent',
    plugins: [ownModulesArePure],
  });
  // A bare `import './x.ts'` of a module marked pure would be dropped: refuse such a bundle.
  const dropped = result.warnings.filter((w) => w.id === 'ignored-bare-import');
  if (dropped.length > 0) {
    const where = dropped.map((w) => `${w.location?.file}:${w.location?.line}: ${w.text}`).join('\n  ');
    throw new Error(`a module is imported for its side effects only, which the bundle would drop (deploy/build.mjs):\n  ${where}`);
  }

  fs.mkdirSync(DIST, { recursive: true });
  for (const f of result.outputFiles) {
    if (path.dirname(f.path) !== DIST) throw new Error(`${rel(f.path)}: every output must sit directly in dist/ (paths from import.meta.url)`);
  }
  // Chunks and maps first, the entry point and its map last: the entry only imports what is written.
  const order = (f) => (f.path === ENTRY ? 2 : f.path === `${ENTRY}.map` ? 1 : 0);
  const outputs = [...result.outputFiles].sort((a, b) => order(a) - order(b));
  for (const f of outputs) writeAtomic(f.path, f.contents);

  const inputs = [...new Set([...Object.keys(result.metafile.inputs), ...CONFIG_INPUTS])].sort();
  const info = { format: BUILD_INFO_FORMAT, startedAtMs, builtAt: new Date().toISOString(), esbuild: esbuild.version, inputs, outputs: outputs.map((f) => rel(f.path)) };
  writeAtomic(BUILD_INFO, JSON.stringify(info, null, 2) + '\n');
  pruneOldOutputs(new Set([...outputs.map((f) => f.path), BUILD_INFO]), Date.now());
  const bytes = outputs.filter((f) => f.path.endsWith('.mjs')).reduce((n, f) => n + f.contents.length, 0);
  return { files: outputs.length, kB: Math.round(bytes / 1024), ms: Date.now() - startedAtMs, inputs: inputs.length };
}

/** Builds when the bundle is missing or older than a source; returns why it built, or undefined. */
export async function buildIfStale({ force = false } = {}) {
  const state = force ? { fresh: false, reason: '--force' } : bundleState();
  if (state.fresh) return undefined;
  const r = await build();
  return `${state.reason}: built dist/meterline.mjs (${r.files} files, ${r.kB} kB of JavaScript, from ${r.inputs} sources) in ${r.ms} ms`;
}

async function main(argv) {
  const say = (s) => process.stderr.write(`build: ${s}\n`);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(fs.readFileSync(THIS_FILE, 'utf8').split('\nimport ')[0].replace(/^#!.*\n/, '').replace(/^\/\/ ?/gm, ''));
    return;
  }
  if (argv.includes('--check')) {
    const state = bundleState();
    if (!state.fresh) {
      say(`${state.reason}; run \`node deploy/build.mjs\``);
      process.exitCode = 1;
    }
    return;
  }
  const done = await buildIfStale({ force: argv.includes('--force') });
  if (done) say(done);
}

if (process.argv[1] && pathToFileURL(path.resolve(process.argv[1])).href === import.meta.url) {
  main(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`build: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
