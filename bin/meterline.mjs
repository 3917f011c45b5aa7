#!/usr/bin/env node
// The `meterline` command. Runs the CLI's bundle, dist/meterline.mjs, when it is up to date with
// the sources (deploy/build.mjs builds it; `npm start`, `npm run demo` and `npm test` run that
// first): plain JavaScript, nothing to compile, so a command starts in a fraction of a second.
// When the bundle is missing or a source changed after it was built, the TypeScript runs through
// tsx as it is on disk (never the older bundle), after one line on stderr: tsx compiles at every
// start, which costs 1-3 s. METERLINE_TSX=1 always runs through tsx, without the line.
// docs/runbook.md#start-up; figures in bench/results/cli-startup.md.
import { pathToFileURL } from 'node:url';
import { bundleState, ENTRY } from './bundle-state.mjs';

const state = process.env.METERLINE_TSX === '1' ? { fresh: false } : bundleState();
if (state.fresh) {
  // Stack traces through the bundle name the .ts files and lines (its linked source maps).
  process.setSourceMapsEnabled(true);
  await import(pathToFileURL(ENTRY).href);
} else {
  if (state.reason) {
    process.stderr.write(`meterline: ${state.reason}, so the TypeScript runs through tsx (1-3 s slower to start). Build the bundle: node deploy/build.mjs\n`);
  }
  const { register } = await import('tsx/esm/api');
  register();
  await import('../cli/main.ts');
}
