/**
 * What durability costs on NATS JetStream: batched publishes (one message per batch of events,
 * as HTTP ingest sends them) to a stream on one nats-server (R1) and on a 3-node loopback
 * cluster with R1 and R3 streams, pipelined like ingest does. Prints and writes
 * bench/results/nats-durability.{md,json}.
 *
 *   npm run bench:nats [-- --messages 3000 --batch 200 --inflight 64]
 *
 * `sync_interval` (how often JetStream fsyncs; `always` = every write) needs nats-server ≥ 2.10;
 * the run says whether the server here accepts it and measures it if it does.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { startNatsCluster, startNatsServer } from '../common/nats-server.ts';

const { values: args } = parseArgs({
  options: { messages: { type: 'string', default: '3000' }, batch: { type: 'string', default: '200' }, inflight: { type: 'string', default: '64' }, out: { type: 'string', default: 'bench/results/nats-durability' } },
});
const MESSAGES = Number(args.messages);
const BATCH = Number(args.batch);
const INFLIGHT = Number(args.inflight);

interface Row {
  setup: string;
  replicas: number;
  syncInterval: string;
  messagesPerSecond: number;
  eventsPerSecond: number;
  mbPerSecond: number;
  p50ms: number;
  p99ms: number;
}

function batchBody(i: number): string {
  const events = Array.from({ length: BATCH }, (_, j) => ({
    specversion: '1.0',
    id: `evt-${i}-${j}`,
    source: 'bench',
    type: 'api.call',
    subject: `customer-${(i * 7 + j) % 1000}`,
    time: new Date(1_790_000_000_000 + i * 1000 + j).toISOString(),
    data: { tokens: (i + j) % 1000, model: 'gpt' },
  }));
  return JSON.stringify(events);
}

async function measure(url: string, replicas: number): Promise<Omit<Row, 'setup' | 'syncInterval'>> {
  const nc = await connect({ servers: url.split(',') });
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const name = `DURABILITY_R${replicas}_${Date.now()}`;
  await jsm.streams.add({ name, subjects: [`${name}.>`], storage: StorageType.File, num_replicas: replicas });
  const bodies = Array.from({ length: 50 }, (_, i) => batchBody(i));
  const bytes = Buffer.byteLength(bodies[0]!);
  const latencies: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: INFLIGHT }, async () => {
      while (next < MESSAGES) {
        const i = next++;
        const s = performance.now();
        await js.publish(`${name}.p`, bodies[i % bodies.length]!, { msgID: `m${i}` });
        latencies.push(performance.now() - s);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  await jsm.streams.delete(name);
  await nc.close();
  latencies.sort((a, b) => a - b);
  const q = (p: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]! * 10) / 10;
  return {
    replicas,
    messagesPerSecond: Math.round(MESSAGES / seconds),
    eventsPerSecond: Math.round((MESSAGES * BATCH) / seconds),
    mbPerSecond: Math.round(((MESSAGES * bytes) / seconds / 2 ** 20) * 10) / 10,
    p50ms: q(0.5),
    p99ms: q(0.99),
  };
}

function syncIntervalSupported(): boolean {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nats-si-'));
  const conf = path.join(dir, 'c.conf');
  fs.writeFileSync(conf, `listen: 127.0.0.1:-1\njetstream { store_dir: ${JSON.stringify(dir)}\n sync_interval: always }\n`);
  const r = spawnSync('nats-server', ['-c', conf, '-t'], { encoding: 'utf8' });
  fs.rmSync(dir, { recursive: true, force: true });
  return r.status === 0;
}

async function main(): Promise<void> {
  const version = spawnSync('nats-server', ['--version'], { encoding: 'utf8' }).stdout.trim();
  const syncs = syncIntervalSupported() ? ['default', 'always'] : ['default'];
  const rows: Row[] = [];
  for (const sync of syncs) {
    const syncInterval = sync === 'default' ? undefined : sync;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nats-durability-'));
    const single = await startNatsServer({ storeDir: path.join(dir, 'single'), syncInterval });
    rows.push({ setup: 'one nats-server', syncInterval: sync, ...(await measure(single.url, 1)) });
    await single.stop();
    const cluster = await startNatsCluster({ dir: path.join(dir, 'cluster'), syncInterval });
    for (const replicas of [1, 3]) rows.push({ setup: '3-node cluster (loopback)', syncInterval: sync, ...(await measure(cluster.url, replicas)) });
    await cluster.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    for (const r of rows.slice(-3)) process.stderr.write(`${r.setup} R${r.replicas} sync ${r.syncInterval}: ${r.eventsPerSecond} events/s, p99 ${r.p99ms} ms\n`);
  }
  const md = [
    `# NATS JetStream durability cost (${new Date().toISOString().slice(0, 10)})`,
    '',
    `\`npm run bench:nats\` on ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB; ${version}. ${MESSAGES} messages of ${BATCH} events (~${Math.round(Buffer.byteLength(batchBody(0)) / 1024)} KiB each, one HTTP batch), ${INFLIGHT} publishes in flight, file storage; all nodes on this one machine.`,
    '',
    '| setup | replicas | sync_interval | batches/s | events/s | MiB/s | ack p50 ms | ack p99 ms |',
    '|---|---:|---|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.setup} | R${r.replicas} | ${r.syncInterval} | ${r.messagesPerSecond} | ${r.eventsPerSecond} | ${r.mbPerSecond} | ${r.p50ms} | ${r.p99ms} |`),
    '',
    syncs.length === 1
      ? `\`sync_interval\` is not measured: this nats-server (${version}) rejects the option (it arrived in 2.10). Its default fsyncs every 2 minutes; a write acknowledged by an R3 stream is on three servers' page caches, which survives a node's crash but not a simultaneous power loss of a majority; \`sync_interval: always\` (2.10+) closes that gap at the cost of an fsync per write.`
      : '`always` fsyncs every write before the acknowledgement.',
    '',
    'On one machine the three nodes share two cores and one disk, so R3 here measures the replication protocol, not network latency between hosts.',
    '',
  ].join('\n');
  fs.writeFileSync(`${args.out}.md`, md);
  fs.writeFileSync(`${args.out}.json`, JSON.stringify({ version, messages: MESSAGES, batch: BATCH, inflight: INFLIGHT, rows }, null, 2) + '\n');
  process.stdout.write(md);
}

await main();
