#!/usr/bin/env node
// Offline checks of deploy/ against the code, for the files no test runs:
//
//   node --import tsx deploy/check.mjs
//
// 1. every YAML and JSON file under deploy/ parses (all documents of multi-document YAML);
// 2. every metric in the Grafana dashboard and the Prometheus alert rules is one that
//    common/metrics.ts registers (prom-client defaults included; histograms as _bucket, _sum,
//    _count), or Prometheus' `up`, or an external exporter's (ClickHouse*, kubelet_*), listed;
// 3. every environment variable given to a Meterline container (compose and Kubernetes) is one
//    that common/config.ts reads, or one the CLI reads;
// 4. every `meterline <command>` the files run is a command of `meterline --help`;
// 5. references resolve: compose `depends_on` services, named volumes and mounted files;
//    kustomization resources;
// 6. every link to a docs/runbook.md section (alert rules, READMEs, the runbook itself) has
//    its heading;
// 7. probes and scraping of every long-running role (ingest, api, processor, scheduler), all of
//    which serve HTTP on PORT: compose healthchecks use a mode of probe.sh, and HTTP (not the
//    `nats` mode); Kubernetes containers declare the port and have readiness and liveness
//    probes over HTTP; probed paths are ones the role serves (api/routes/ops.ts,
//    cli/ops-server.ts); each role has a Prometheus scrape job (compose) or a port the PodMonitor
//    scrapes (Kubernetes), with the read key; Services target declared ports; every server in
//    a compose NATS_URL is a compose host name;
// 8. the image holds every folder `meterline` loads: the top-level folders reached by imports
//    from bin/meterline.mjs are each copied by deploy/Dockerfile and let through by its
//    .dockerignore, and it builds the CLI bundle (deploy/build.mjs) that bin/meterline.mjs runs.
// Exits 1 and lists every problem; prints what it checked otherwise.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml'; // installed with @fastify/swagger, a dependency
import { createMetrics } from '../common/metrics.ts';
import { ConfigSchema } from '../common/config.ts';

const deployDir = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(deployDir, '..');
const rel = (p) => path.relative(root, p);
const problems = [];
const notes = [];
const problem = (file, msg) => problems.push(`${rel(file)}: ${msg}`);

// Variables the CLI reads besides ConfigSchema (cli/main.ts), and Node's own.
const CLI_VARS = new Set(['METERLINE_URL', 'METERLINE_API_KEY', 'NODE_OPTIONS']);
// Series from outside Meterline that the rules and dashboard may use.
const EXTERNAL_METRIC = /^(up|ClickHouse(Metrics|AsyncMetrics|ProfileEvents)_\w+|kubelet_volume_stats_\w+)$/;

// ---- 1. parse everything -------------------------------------------------------------------
function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}
const files = walk(deployDir);
const yamlDocs = new Map(); // file -> parsed documents
for (const f of files.filter((f) => /\.ya?ml$/.test(f))) {
  const docs = parseAllDocuments(fs.readFileSync(f, 'utf8'), { merge: true, uniqueKeys: true });
  const errors = docs.flatMap((d) => d.errors);
  if (errors.length > 0) errors.forEach((e) => problem(f, `YAML: ${e.message.split('\n')[0]}`));
  else yamlDocs.set(f, docs.map((d) => d.toJS({ maxAliasCount: 1000 })).filter((d) => d != null));
}
const jsonDocs = new Map();
for (const f of files.filter((f) => f.endsWith('.json'))) {
  try {
    jsonDocs.set(f, JSON.parse(fs.readFileSync(f, 'utf8')));
  } catch (err) {
    problem(f, `JSON: ${err.message}`);
  }
}
const yamlOf = (p) => yamlDocs.get(path.join(deployDir, p)) ?? [];

// ---- 2. metric names -----------------------------------------------------------------------
const known = new Map(); // name -> type
for (const m of await createMetrics().registry.getMetricsAsJSON()) {
  known.set(m.name, m.type);
  if (m.type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) known.set(m.name + s, 'histogram series');
}
const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan']);

/** The metric names a PromQL expression selects (label names, functions and keywords removed). */
function metricsIn(expr) {
  let e = expr;
  const lv = /^\s*label_values\(\s*([^,)]*)/.exec(e);
  if (lv) e = lv[1];
  e = e
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '')
    .replace(/\$\{?\w+\}?/g, '');
  const names = new Set();
  for (const m of e.matchAll(/(?<![\w.:])[A-Za-z_:][\w:]*/g)) {
    const rest = e.slice(m.index + m[0].length);
    if (/^\s*\(/.test(rest) || KEYWORDS.has(m[0])) continue;
    names.add(m[0]);
  }
  return [...names];
}

const exprs = []; // [file, where, expr]
function collectExprs(file, node, where) {
  if (Array.isArray(node)) node.forEach((n, i) => collectExprs(file, n, `${where}[${i}]`));
  else if (node && typeof node === 'object') {
    if (typeof node.expr === 'string') exprs.push([file, `${where} "${node.title ?? node.alert ?? node.record ?? node.refId ?? ''}"`, node.expr]);
    if (node.type === 'query' && typeof node.definition === 'string') exprs.push([file, `variable ${node.name}`, node.definition]);
    for (const [k, v] of Object.entries(node)) if (k !== 'expr') collectExprs(file, v, node.title ? `panel "${node.title}"` : where);
  }
}
const dashboardFile = path.join(deployDir, 'grafana', 'meterline-dashboard.json');
const alertsFile = path.join(deployDir, 'prometheus', 'alerts.yml');
collectExprs(dashboardFile, jsonDocs.get(dashboardFile), 'dashboard');
for (const doc of yamlDocs.get(alertsFile) ?? []) collectExprs(alertsFile, doc, 'rules');
const external = new Set();
const used = new Set();
for (const [file, where, expr] of exprs) {
  const names = metricsIn(expr);
  if (names.length === 0) problem(file, `${where}: no metric found in ${JSON.stringify(expr)}`);
  for (const n of names) {
    if (known.has(n)) used.add(known.get(n) === 'histogram series' ? n.replace(/_(bucket|sum|count)$/, '') : n);
    else if (EXTERNAL_METRIC.test(n)) external.add(n);
    else problem(file, `${where}: unknown metric ${n} (not registered in common/metrics.ts)`);
  }
}
for (const [file, where, expr] of exprs) {
  // rate()/increase() only on counters (and histogram series); histogram_quantile only on buckets.
  for (const m of expr.matchAll(/\b(rate|increase)\(\s*([A-Za-z_:][\w:]*)/g)) {
    const t = known.get(m[2]);
    if (t && t !== 'counter' && t !== 'histogram series') problem(file, `${where}: ${m[1]}() of ${m[2]}, a ${t}`);
  }
}
const own = [...known].filter(([n, t]) => n.startsWith('meterline_') && !n.startsWith('meterline_nodejs_') && !n.startsWith('meterline_process_') && t !== 'histogram series').map(([n]) => n);
const unusedOwn = own.filter((n) => !used.has(n));
if (unusedOwn.length > 0) notes.push(`Meterline metrics on no dashboard panel or rule: ${unusedOwn.join(', ')}`);

// ---- 3. environment variables, 4. commands -------------------------------------------------
const configVars = new Set(Object.keys(ConfigSchema.shape));
const help = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'cli', 'main.ts'), '--help'], { encoding: 'utf8', cwd: root });
const commands = new Set([...help.stdout.matchAll(/^ {2}([a-z][\w-]*)/gm)].map((m) => m[1]).filter((c) => c !== 'help'));
if (commands.size === 0) problem(path.join(root, 'cli', 'main.ts'), `could not list commands from --help: ${help.stderr}`);

function checkVar(file, where, name) {
  if (configVars.has(name) || CLI_VARS.has(name)) return;
  problem(file, `${where}: ${name} is not a variable Meterline reads (common/config.ts)`);
}
/** `entrypoint`: the words are arguments of the `meterline` entrypoint (the image's). */
function checkCommands(file, where, words, { entrypoint = false } = {}) {
  const text = Array.isArray(words) ? words.join(' ') : String(words ?? '');
  const lead = entrypoint && Array.isArray(words) && words.length > 0 && !/^(sh|bash|\/)/.test(words[0]) ? [words[0]] : [];
  const named = [...text.matchAll(/(?<![\w/.-])meterline[ \t]+([a-z][\w-]*)/g)].map((m) => m[1]);
  for (const c of [...lead, ...named]) {
    if (!commands.has(c)) problem(file, `${where}: \`meterline ${c}\` is not a command (meterline --help)`);
  }
}

// docker-compose.yml
const composeFile = path.join(deployDir, 'docker-compose.yml');
const compose = yamlOf('docker-compose.yml')[0];
if (!compose) problem(composeFile, 'missing or empty');
else {
  const services = compose.services ?? {};
  const volumes = new Set(Object.keys(compose.volumes ?? {}));
  for (const [name, svc] of Object.entries(services)) {
    const isMeterline = /meterline/.test(String(svc.image ?? ''));
    for (const dep of Object.keys(Array.isArray(svc.depends_on) ? Object.fromEntries(svc.depends_on.map((d) => [d, 1])) : (svc.depends_on ?? {}))) {
      if (!services[dep]) problem(composeFile, `${name}: depends_on ${dep}, which is not a service`);
    }
    for (const v of svc.volumes ?? []) {
      const src = typeof v === 'string' ? v.split(':')[0] : v.source;
      if (/^[./]/.test(src)) {
        if (!fs.existsSync(path.resolve(deployDir, src))) problem(composeFile, `${name}: mounts ${src}, which does not exist`);
      } else if (!volumes.has(src)) problem(composeFile, `${name}: volume ${src} is not declared under volumes:`);
    }
    if (isMeterline) {
      const env = Array.isArray(svc.environment) ? Object.fromEntries(svc.environment.map((e) => e.split('='))) : (svc.environment ?? {});
      for (const k of Object.keys(env)) checkVar(composeFile, name, k);
      checkCommands(composeFile, name, svc.command, { entrypoint: true });
    }
    if (svc.healthcheck?.test) checkCommands(composeFile, `${name} healthcheck`, svc.healthcheck.test);
  }
}

// Kubernetes manifests
for (const [file, docs] of yamlDocs) {
  if (!file.includes(`${path.sep}k8s${path.sep}`)) continue;
  for (const doc of docs) {
    if (doc.kind === 'Kustomization') {
      for (const r of doc.resources ?? []) if (!fs.existsSync(path.resolve(path.dirname(file), r))) problem(file, `kustomization resource ${r} does not exist`);
      for (const g of doc.configMapGenerator ?? []) {
        for (const f of g.envs ?? []) {
          const envFile = path.resolve(path.dirname(file), f);
          if (!fs.existsSync(envFile)) problem(file, `configMapGenerator env file ${f} does not exist`);
          else if (g.name === 'meterline') {
            for (const line of fs.readFileSync(envFile, 'utf8').split('\n')) {
              const m = /^\s*([A-Za-z_]\w*)=/.exec(line);
              if (m) checkVar(envFile, 'ConfigMap meterline', m[1]);
            }
          }
        }
      }
      continue;
    }
    if (doc.kind === 'Secret' && doc.metadata?.name === 'meterline') for (const k of Object.keys({ ...doc.stringData, ...doc.data })) checkVar(file, 'Secret meterline', k);
    const pod = doc.spec?.template?.spec ?? doc.spec?.jobTemplate?.spec?.template?.spec;
    for (const c of [...(pod?.containers ?? []), ...(pod?.initContainers ?? [])]) {
      if (!/meterline/.test(c.image ?? '')) continue;
      const where = `${doc.kind} ${doc.metadata?.name} container ${c.name}`;
      for (const e of c.env ?? []) checkVar(file, where, e.name);
      checkCommands(file, where, [...(c.command ?? []), ...(c.args ?? [])], { entrypoint: !c.command });
      for (const p of ['readinessProbe', 'livenessProbe', 'startupProbe']) if (c[p]?.exec) checkCommands(file, `${where} ${p}`, c[p].exec.command);
    }
  }
}

// ---- 6. runbook links ---------------------------------------------------------------------
const runbookFile = path.join(root, 'docs', 'runbook.md');
const runbook = fs.existsSync(runbookFile) ? fs.readFileSync(runbookFile, 'utf8') : '';
const anchors = new Set([...runbook.matchAll(/^#{1,6}\s+(.+)$/gm)].map((m) => m[1].trim().toLowerCase().replace(/[^\w\- ]/g, '').replace(/ /g, '-')));
const links = [];
for (const f of files.filter((f) => /\.(ya?ml|json|md|conf|xml)$/.test(f))) for (const m of fs.readFileSync(f, 'utf8').matchAll(/runbook\.md#([\w-]+)/g)) links.push([f, m[1]]);
for (const m of runbook.matchAll(/\]\(#([\w-]+)\)/g)) links.push([runbookFile, m[1]]);
for (const [f, a] of links) if (!anchors.has(a)) problem(f, `links to docs/runbook.md#${a}, which is no heading there`);

// ---- 7. probes and scraping ------------------------------------------------------------------
const SERVING_ROLES = ['ingest', 'api', 'processor', 'scheduler'];
const readText = (...p) => (fs.existsSync(path.join(root, ...p)) ? fs.readFileSync(path.join(root, ...p), 'utf8') : '');
const apiPaths = new Set([...readText('api', 'routes', 'ops.ts').matchAll(/app\.get\('(\/[\w-]*)'/g)].map((m) => m[1]));
const opsPaths = new Set([...readText('cli', 'ops-server.ts').matchAll(/pathname === '(\/[\w-]*)'/g)].map((m) => m[1]));
if (apiPaths.size === 0) problem(path.join(root, 'api', 'routes', 'ops.ts'), 'found no routes (app.get(...))');
if (opsPaths.size === 0) problem(path.join(root, 'cli', 'ops-server.ts'), 'found no paths (pathname === ...)');
/** What a role serves on PORT besides its API: the probe and metrics paths. */
const servedPaths = (role) => (role === 'processor' || role === 'scheduler' ? opsPaths : apiPaths);
const probeScript = readText('deploy', 'probe.sh');
const probeModes = new Set([...probeScript.matchAll(/^ {2}([a-z]+)\)$/gm)].map((m) => m[1]));
const imagePort = Number(/\bPORT=(\d+)/.exec(readText('deploy', 'Dockerfile'))?.[1] ?? 8080);
let probesChecked = 0;
const scrapedRoles = new Set();

/** A probe.sh command line (compose test or exec probe): a known mode; HTTP paths the role serves. */
function checkProbeCommand(file, where, role, words) {
  const i = words.findIndex((w) => /(^|\/)probe\.sh$/.test(w));
  if (i < 0) return false;
  const [mode, probePath = '/readyz'] = words.slice(i + 1);
  if (!probeModes.has(mode)) problem(file, `${where}: probe.sh has no mode ${JSON.stringify(mode)} (modes: ${[...probeModes].join(', ')})`);
  else if (mode !== 'http') problem(file, `${where}: probe.sh ${mode} on the ${role} role, which serves HTTP: probe /readyz or /healthz`);
  else if (!servedPaths(role).has(probePath)) problem(file, `${where}: probes ${probePath}, which the ${role} role does not serve (${[...servedPaths(role)].join(', ')})`);
  probesChecked++;
  return true;
}

if (compose) {
  const services = compose.services ?? {};
  const hosts = new Set(Object.entries(services).flatMap(([n, svc]) => [n, svc.hostname, ...Object.values(svc.networks ?? {}).flatMap((net) => net?.aliases ?? [])]).filter(Boolean));
  const promFile = path.join(deployDir, 'prometheus', 'prometheus.yml');
  const jobs = yamlOf('prometheus/prometheus.yml')[0]?.scrape_configs ?? [];
  for (const [name, svc] of Object.entries(services)) {
    if (!/meterline/.test(String(svc.image ?? ''))) continue;
    const env = Array.isArray(svc.environment) ? Object.fromEntries(svc.environment.map((e) => e.split('='))) : (svc.environment ?? {});
    for (const u of String(env.NATS_URL ?? '').split(',').filter((u) => u.trim())) {
      const host = /^(?:[a-z]+:\/\/)?(?:[^@/]*@)?([^:/]+)/.exec(u.trim())?.[1];
      if (!hosts.has(host)) problem(composeFile, `${name}: NATS_URL server ${u.trim()} is no service, host name or alias here`);
    }
    const role = Array.isArray(svc.command) ? svc.command[0] : undefined;
    if (!SERVING_ROLES.includes(role)) continue;
    const test = Array.isArray(svc.healthcheck?.test) ? svc.healthcheck.test.map(String) : String(svc.healthcheck?.test ?? '').split(/\s+/);
    if (!svc.healthcheck?.test) problem(composeFile, `${name}: no healthcheck (the ${role} role serves /readyz)`);
    else if (!checkProbeCommand(composeFile, `${name} healthcheck`, role, test)) problem(composeFile, `${name}: healthcheck does not use deploy/probe.sh`);
    const job = jobs.find((j) => (j.dns_sd_configs ?? []).some((d) => (d.names ?? []).includes(name)) || (j.static_configs ?? []).some((c) => (c.targets ?? []).some((t) => t.split(':')[0] === name)));
    if (!job) {
      problem(promFile, `no scrape job for ${name} (the ${role} role serves /metrics)`);
      continue;
    }
    scrapedRoles.add(role);
    if (job.job_name !== `meterline-${role}`) problem(promFile, `job ${job.job_name} scrapes ${name}: the alerts and dashboard expect job meterline-${role}`);
    if (!(job.relabel_configs ?? []).some((r) => r.target_label === 'role' && r.replacement === role)) problem(promFile, `job ${job.job_name}: no role="${role}" label`);
    if (!job.authorization?.credentials_file) problem(promFile, `job ${job.job_name}: /metrics needs a read-scope key (authorization.credentials_file)`);
    const ports = (job.dns_sd_configs ?? []).map((d) => d.port);
    if (ports.some((p) => p !== imagePort)) problem(promFile, `job ${job.job_name}: port ${ports.join(',')}, but the roles listen on ${imagePort} (PORT)`);
  }
}

const podMonitorPorts = new Set((yamlOf('k8s/monitoring/podmonitor.yaml').find((d) => d.kind === 'PodMonitor')?.spec?.podMetricsEndpoints ?? []).map((e) => e.port));
const templates = []; // [labels, port names]
const services = []; // [file, doc]
for (const [file, docs] of yamlDocs) {
  if (!file.includes(`${path.sep}k8s${path.sep}`)) continue;
  for (const doc of docs) {
    if (doc.kind === 'Service') services.push([file, doc]);
    const tpl = doc.spec?.template;
    const containers = (tpl?.spec?.containers ?? []).filter((c) => /meterline/.test(c.image ?? ''));
    if (containers.length === 0) continue;
    templates.push([tpl.metadata?.labels ?? {}, new Set(containers.flatMap((c) => (c.ports ?? []).flatMap((p) => [p.name, p.containerPort])))]);
    for (const c of containers) {
      const role = (c.command ?? c.args ?? [])[0];
      if (!SERVING_ROLES.includes(role) || doc.kind === 'Job') continue;
      const where = `${doc.kind} ${doc.metadata?.name} container ${c.name}`;
      const ports = new Set((c.ports ?? []).flatMap((p) => [p.name, p.containerPort]));
      if (!(c.ports ?? []).some((p) => p.containerPort === imagePort)) problem(file, `${where}: declares no containerPort ${imagePort} (the ${role} role listens on PORT)`);
      if (![...podMonitorPorts].some((p) => ports.has(p))) problem(file, `${where}: no port named ${[...podMonitorPorts].join('/') || '?'}: the PodMonitor (and kubernetes-scrape.yml) would not scrape it`);
      else scrapedRoles.add(role);
      for (const kind of ['readinessProbe', 'livenessProbe']) if (!c[kind]) problem(file, `${where}: no ${kind} (the ${role} role serves ${kind === 'readinessProbe' ? '/readyz' : '/healthz'})`);
      for (const kind of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
        const probe = c[kind];
        if (!probe) continue;
        if (probe.httpGet) {
          probesChecked++;
          if (!ports.has(probe.httpGet.port)) problem(file, `${where} ${kind}: port ${probe.httpGet.port} is not declared`);
          if (!servedPaths(role).has(probe.httpGet.path)) problem(file, `${where} ${kind}: ${probe.httpGet.path} is not served by the ${role} role (${[...servedPaths(role)].join(', ')})`);
          if (kind === 'readinessProbe' && probe.httpGet.path !== '/readyz') problem(file, `${where} readinessProbe: ${probe.httpGet.path}; readiness is /readyz`);
          if (kind !== 'readinessProbe' && probe.httpGet.path !== '/healthz') problem(file, `${where} ${kind}: ${probe.httpGet.path}; /readyz fails while a dependency is away, and a restart does not help then: use /healthz`);
        } else if (probe.exec) {
          if (!checkProbeCommand(file, `${where} ${kind}`, role, probe.exec.command ?? [])) problem(file, `${where} ${kind}: exec without deploy/probe.sh`);
        } else problem(file, `${where} ${kind}: neither httpGet nor exec`);
      }
    }
  }
}
for (const [file, svc] of services) {
  const sel = svc.spec?.selector ?? {};
  if (sel['app.kubernetes.io/name'] !== 'meterline') continue;
  const matching = templates.filter(([labels]) => Object.entries(sel).every(([k, v]) => labels[k] === v));
  if (matching.length === 0) problem(file, `Service ${svc.metadata?.name}: selects no Meterline pod template`);
  for (const p of svc.spec?.ports ?? []) {
    const target = p.targetPort ?? p.port;
    if (matching.some(([, ports]) => !ports.has(target))) problem(file, `Service ${svc.metadata?.name}: targetPort ${target} is not a port of the pods it selects`);
  }
}
for (const role of SERVING_ROLES) if (!scrapedRoles.has(role)) problem(deployDir, `the ${role} role is scraped nowhere`);

// ---- 8. the image holds every folder the CLI loads ------------------------------------------
const loadedDirs = new Set();
{
  const seen = new Set();
  const queue = [path.join(root, 'bin', 'meterline.mjs')];
  while (queue.length > 0) {
    const file = queue.pop();
    if (seen.has(file) || !fs.existsSync(file)) continue;
    seen.add(file);
    loadedDirs.add(path.relative(root, file).split(path.sep)[0]);
    const src = fs.readFileSync(file, 'utf8');
    for (const m of src.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)['"](\.{1,2}\/[^'"]+)['"]/g)) queue.push(path.resolve(path.dirname(file), m[1]));
  }
  const dockerfile = readText('deploy', 'Dockerfile');
  const ignore = readText('deploy', 'Dockerfile.dockerignore').split('\n').map((l) => l.trim());
  for (const dir of [...loadedDirs].sort()) {
    if (!new RegExp(`^COPY ${dir} \\./${dir}$`, 'm').test(dockerfile)) problem(path.join(deployDir, 'Dockerfile'), `meterline loads ${dir}/ but the image does not COPY it`);
    if (!ignore.includes(`!${dir}`)) problem(path.join(deployDir, 'Dockerfile.dockerignore'), `meterline loads ${dir}/ but the build context leaves it out (add !${dir})`);
  }
  // The image runs the CLI bundle (bin/meterline.mjs falls back to compiling TypeScript at every start without it).
  if (!/^RUN node deploy\/build\.mjs\b/m.test(dockerfile)) problem(path.join(deployDir, 'Dockerfile'), 'the image does not build the CLI bundle (RUN node deploy/build.mjs): meterline would compile its TypeScript at every start');
  if (!/^COPY deploy\/build\.mjs \.\/deploy\/build\.mjs$/m.test(dockerfile)) problem(path.join(deployDir, 'Dockerfile'), 'the image builds the CLI bundle but does not COPY deploy/build.mjs');
  if (!ignore.includes('!deploy/build.mjs')) problem(path.join(deployDir, 'Dockerfile.dockerignore'), 'the build context leaves out deploy/build.mjs (add !deploy/build.mjs)');
}

// ---- report --------------------------------------------------------------------------------
console.log(`parsed ${yamlDocs.size} YAML and ${jsonDocs.size} JSON files under deploy/`);
console.log(`checked ${exprs.length} PromQL expressions: ${used.size} Meterline metrics used; external series: ${[...external].sort().join(', ') || 'none'}`);
console.log(`meterline commands: ${[...commands].join(', ')}`);
console.log(`${links.length} links to runbook sections`);
console.log(`${probesChecked} probes and healthchecks over HTTP (probe.sh modes: ${[...probeModes].join(', ')}); scraped roles: ${[...scrapedRoles].sort().join(', ')}`);
console.log(`the image copies every folder meterline loads: ${[...loadedDirs].sort().join(', ')}, and builds the CLI bundle`);
for (const n of notes) console.log(`note: ${n}`);
if (problems.length > 0) {
  console.error(`\n${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
console.log('deploy/ is consistent with the code.');
