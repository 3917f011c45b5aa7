// Whether dist/ holds a bundle of the CLI built from the sources as they are now. deploy/build.mjs
// writes dist/build-info.json beside the bundle: the time the build started, every source file
// it read (esbuild's metafile inputs, plus the build's own configuration) and every file it
// wrote. The bundle is up to date when every output is there and no input changed (mtime) or
// disappeared since the build started. A few hundred stat() calls: a few milliseconds, so
// bin/meterline.mjs runs this check on every command.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/**
 * One level below the root, like every source folder: the modules that find files from their own
 * location (`../sql`, `../web`, `../package.json` from `import.meta.url`) find the same ones
 * from the bundle's files. deploy/build.mjs keeps every output directly in this folder.
 */
export const DIST = path.join(ROOT, 'dist');
export const ENTRY = path.join(DIST, 'meterline.mjs');
export const BUILD_INFO = path.join(DIST, 'build-info.json');
/** The layout of build-info.json; a bundle written with another layout is rebuilt. */
export const BUILD_INFO_FORMAT = 1;

/**
 * `{ fresh: true }`, or `{ fresh: false, reason }` where the reason says what makes the bundle
 * unusable (missing, or which source changed after it was built).
 */
export function bundleState() {
  let info;
  try {
    info = JSON.parse(fs.readFileSync(BUILD_INFO, 'utf8'));
  } catch {
    return { fresh: false, reason: 'there is no CLI bundle (dist/meterline.mjs)' };
  }
  if (info?.format !== BUILD_INFO_FORMAT || !Array.isArray(info.inputs) || !Array.isArray(info.outputs)) {
    return { fresh: false, reason: 'dist/build-info.json is from another version of deploy/build.mjs' };
  }
  for (const rel of info.outputs) {
    if (!fs.existsSync(path.join(ROOT, rel))) return { fresh: false, reason: `the CLI bundle is incomplete (${rel} is missing)` };
  }
  for (const rel of info.inputs) {
    let mtimeMs;
    try {
      mtimeMs = fs.statSync(path.join(ROOT, rel)).mtimeMs;
    } catch {
      return { fresh: false, reason: `${rel}, a source of the CLI bundle, is gone` };
    }
    if (mtimeMs > info.startedAtMs) return { fresh: false, reason: `${rel} changed after the CLI bundle was built` };
  }
  return { fresh: true };
}
