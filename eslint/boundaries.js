// Meterline's architecture rules, enforced by ESLint (and so by `npm test`):
//
// - `meterline/layers`: a component imports only the components below it, and another
//   component only through that component's `index.ts` (common/ is a set of independent modules,
//   imported file by file). The pure parts import no I/O. Tests and benchmarks may reach inside
//   any component.
// - `meterline/no-cycle`: no import cycle between files at run time (type-only imports are
//   erased and do not count).
//
// docs/architecture.md explains the layers.
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

const ROOT = path.dirname(path.dirname(new URL(import.meta.url).pathname));

/** What each component may import (besides itself): the layers, low to high. */
export const LAYERS = {
  common: [],
  ingest: ['common'],
  meter: ['common', 'ingest'],
  processor: ['common', 'ingest', 'meter'],
  usage: ['common', 'meter'],
  'store-server': ['common'],
  rater: ['common', 'meter', 'usage'],
  anomaly: ['common', 'meter', 'usage', 'rater'],
  api: ['common', 'ingest', 'meter', 'processor', 'usage', 'rater', 'anomaly'],
  cli: ['common', 'ingest', 'meter', 'processor', 'usage', 'store-server', 'rater', 'anomaly', 'api', 'deploy'],
};
/** The browser code may import server modules only for their types (erased when bundled). */
const TYPE_ONLY_FROM = { web: ['api', 'anomaly', 'meter', 'rater', 'usage', 'ingest'] };
/** Folders whose files may import anything (tests and benchmarks). */
const FREE = new Set(['test', 'bench', 'deploy', 'eslint']);
/** Modules that do I/O: pure files never import them (type-only imports are fine). */
const IO_MODULES = /^(node:|@nats-io\/|@clickhouse\/|chdb$|stripe$|fastify$|@fastify\/|pino$|prom-client$|node-cron$)/;
/** The pure parts (see docs/architecture.md): inputs in, result out, `now` passed in. */
const PURE = [/^rater\/pricing\/(?!.*\.test\.ts$)/, /^rater\/(periods|invoice-builder|invoice-types|aggregates|revenue|journal)\.ts$/, /^usage\/plan\.ts$/, /^meter\/meters\.ts$/, /^processor\/(dedup|bloom)\.ts$/, /^anomaly\/(detect|robust|describe|types)\.ts$/, /^ingest\/cloudevents\.ts$/, /^[a-z-]+\/contracts\.ts$/];

const rel = (file) => path.relative(ROOT, file).split(path.sep).join('/');
const componentOf = (relPath) => (relPath.includes('/') ? relPath.split('/')[0] : undefined);
const isTest = (relPath) => /\.test\.ts$/.test(relPath) || componentOf(relPath) === 'test';

function resolveImport(fromFile, spec) {
  if (!spec.startsWith('.')) return undefined;
  const base = path.resolve(path.dirname(fromFile), spec);
  for (const c of [base, base.replace(/\.js$/, '.ts'), `${base}.ts`, path.join(base, 'index.ts')]) {
    if (fs.existsSync(c) && fs.statSync(c).isFile()) return c;
  }
  return base;
}

/** True if an import/export declaration (typescript-eslint AST) loads the module at run time. */
function loadsAtRunTime(node) {
  if (node.importKind === 'type' || node.exportKind === 'type') return false;
  const specs = node.specifiers ?? [];
  if (node.type === 'ImportDeclaration' && specs.length > 0 && specs.every((s) => s.type === 'ImportSpecifier' && s.importKind === 'type')) return false;
  if (node.type === 'ExportNamedDeclaration' && specs.length > 0 && specs.every((s) => s.exportKind === 'type')) return false;
  return true;
}

// ---- run-time imports, for cycles (read from disk as they are followed, once per lint run) --------

const depsCache = new Map();
/** The files `file` loads at run time: static imports and re-exports that are not type-only (a dynamic import() is lazy and not counted). */
function runtimeDeps(file) {
  let deps = depsCache.get(file);
  if (deps) return deps;
  deps = new Set();
  depsCache.set(file, deps);
  if (!file.endsWith('.ts') || !fs.existsSync(file)) return deps;
  const sf = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, false);
  for (const st of sf.statements) {
    let spec;
    let typeOnly = false;
    if (ts.isImportDeclaration(st)) {
      spec = st.moduleSpecifier.text;
      const c = st.importClause;
      typeOnly = !!c && (c.isTypeOnly || (!c.name && !!c.namedBindings && ts.isNamedImports(c.namedBindings) && c.namedBindings.elements.length > 0 && c.namedBindings.elements.every((e) => e.isTypeOnly)));
    } else if (ts.isExportDeclaration(st) && st.moduleSpecifier) {
      spec = st.moduleSpecifier.text;
      typeOnly = st.isTypeOnly || (!!st.exportClause && ts.isNamedExports(st.exportClause) && st.exportClause.elements.length > 0 && st.exportClause.elements.every((e) => e.isTypeOnly));
    }
    if (!spec || typeOnly) continue;
    const target = resolveImport(file, spec);
    if (target) deps.add(target);
  }
  return deps;
}

/** A path of run-time imports from `from` back to `to`, or undefined. */
function pathBetween(from, to) {
  const parent = new Map([[from, undefined]]);
  const queue = [from];
  while (queue.length) {
    const f = queue.shift();
    if (f === to) {
      const out = [];
      for (let x = f; x !== undefined; x = parent.get(x)) out.unshift(x);
      return out;
    }
    for (const d of runtimeDeps(f)) {
      if (!parent.has(d)) {
        parent.set(d, f);
        queue.push(d);
      }
    }
  }
  return undefined;
}

// ---- rules -----------------------------------------------------------------------------------

function importNodes(context, check) {
  const visit = (node) => node.source && typeof node.source.value === 'string' && check(node, node.source.value);
  return { ImportDeclaration: visit, ExportAllDeclaration: visit, ExportNamedDeclaration: visit, ImportExpression: (node) => node.source.type === 'Literal' && check(node, node.source.value) };
}

const layers = {
  meta: { type: 'problem', docs: { description: 'Components import only lower layers, through their index.ts; pure parts import no I/O' }, schema: [] },
  create(context) {
    const file = context.filename;
    const from = rel(file);
    const fromComp = componentOf(from);
    const pure = PURE.some((re) => re.test(from));
    return importNodes(context, (node, spec) => {
      const runtime = node.type === 'ImportExpression' || loadsAtRunTime(node);
      if (pure && runtime && IO_MODULES.test(spec)) {
        context.report({ node, message: `${from} is a pure part (docs/architecture.md): it may not import the I/O module '${spec}'; take what it needs as a parameter` });
        return;
      }
      const target = resolveImport(file, spec);
      if (!target || !fromComp || FREE.has(fromComp)) return;
      const to = rel(target);
      const toComp = componentOf(to);
      if (!toComp || toComp === fromComp) return;
      if (TYPE_ONLY_FROM[fromComp]) {
        if (!TYPE_ONLY_FROM[fromComp].includes(toComp) || runtime) context.report({ node, message: `${fromComp}/ may import ${toComp}/ only with \`import type\` (the browser bundle must not load server code): '${spec}'` });
        return;
      }
      if (isTest(from)) return;
      const allowed = LAYERS[fromComp];
      if (!allowed) return;
      if (!allowed.includes(toComp)) {
        context.report({ node, message: `${fromComp}/ may not import ${toComp}/ ('${spec}'): ${fromComp} may import only ${allowed.join(', ') || 'nothing'} (layers in docs/architecture.md)` });
        return;
      }
      if (toComp !== 'common' && !to.endsWith('/index.ts')) {
        context.report({ node, message: `import ${toComp}/ through its index.ts, not '${spec}' (export what you need from ${toComp}/index.ts)` });
      }
    });
  },
};

const noCycle = {
  meta: { type: 'problem', docs: { description: 'No run-time import cycles between files' }, schema: [] },
  create(context) {
    const file = context.filename;
    return importNodes(context, (node, spec) => {
      if (node.type === 'ImportExpression' || !loadsAtRunTime(node)) return;
      const target = resolveImport(file, spec);
      if (!target || !fs.existsSync(target)) return;
      const back = pathBetween(target, file);
      if (back) context.report({ node, message: `import cycle: ${[file, ...back].map(rel).join(' → ')}` });
    });
  },
};

export default { meta: { name: 'meterline' }, rules: { layers, 'no-cycle': noCycle } };
