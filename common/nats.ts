import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { AppError } from './errors.ts';
import type { Logger } from './logger.ts';

export interface NatsTopology {
  stream: string;
  dlqStream: string;
  subjectPrefix: string;
  kvBucket: string;
  maxAgeMs: number;
  duplicateWindowMs: number;
  /** Partitions of the event stream (see common/partition.ts); fixed at first start. */
  partitions: number;
  /** Replicas of streams and KV buckets (3 on a 3-node cluster). */
  replicas: number;
  /** How long a processor has to ack a message before JetStream redelivers it (30 s if unset). */
  ackWaitMs?: number;
}

export interface NatsClients {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  kv: KV;
  topology: NatsTopology;
  /** A free-form inbound subject (`<prefix>.<name>`): the router moves its events onto partitions. */
  eventSubject(name?: string): string;
  /** The subject of partition `n`, where HTTP ingest and partition-aware producers publish. */
  partitionSubject(n: number): string;
  dlqSubject: string;
  close(): Promise<void>;
}

/** The consumer of releases before partitions; its position hands over to the router's. */
export const LEGACY_PROCESSOR_CONSUMER = 'processor';
/** Durable consumer of free-form inbound subjects; its owner routes their events onto partitions. */
export const ROUTER_CONSUMER = 'processor-router';
/** Durable consumer of partition `n`. */
export const partitionConsumer = (n: number): string => `processor-p${n}`;
/** Catalog key recording the partition count the stream was created with. */
const PARTITIONS_KEY = 'system.partitions';

/** Connects with endless reconnects (producers keep retrying through a NATS restart). */
export async function connectNats(url: string, logger: Logger, name = 'meterline'): Promise<NatsConnection> {
  const nc = await connect({ servers: url.split(',').map((u) => u.trim()), name, maxReconnectAttempts: -1, reconnectTimeWait: 250, pingInterval: 10_000 });
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnect') logger.warn({ status: s.type }, `nats ${s.type}`);
    }
  })();
  return nc;
}

/**
 * Creates (or updates) the streams, the processor's durable consumers (one per partition and
 * the router's) and the catalog bucket, with `topology.replicas` replicas. Idempotent: every
 * role calls it at start.
 */
export async function openNats(url: string, topology: NatsTopology, logger: Logger, name?: string): Promise<NatsClients> {
  const nc = await connectNats(url, logger, name);
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const partitionPrefix = replaceLastToken(topology.subjectPrefix, 'partition');
  const dlqSubject = replaceLastToken(topology.subjectPrefix, 'deadletter');
  await addOrUpdateStream(jsm, {
    name: topology.stream,
    subjects: [`${topology.subjectPrefix}.>`, `${partitionPrefix}.>`],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    max_age: nanos(topology.maxAgeMs),
    duplicate_window: nanos(topology.duplicateWindowMs),
    num_replicas: topology.replicas,
  });
  await addOrUpdateStream(jsm, {
    name: topology.dlqStream,
    subjects: [dlqSubject],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    num_replicas: topology.replicas,
  });
  const kv = await new Kvm(js).create(topology.kvBucket, { history: 5, replicas: topology.replicas });
  await checkPartitionCount(kv, topology.partitions);
  await ensureConsumers(jsm, topology, partitionPrefix, logger);
  return {
    nc,
    js,
    jsm,
    kv,
    topology,
    dlqSubject,
    eventSubject: (name = 'direct') => `${topology.subjectPrefix}.${name}`,
    partitionSubject: (n) => `${partitionPrefix}.${n}`,
    async close() {
      if (!nc.isClosed()) await nc.drain().catch(() => nc.close());
    },
  };
}

async function addOrUpdateStream(jsm: JetStreamManager, cfg: Parameters<JetStreamManager['streams']['add']>[0]): Promise<void> {
  try {
    await jsm.streams.info(cfg.name!);
    await jsm.streams.update(cfg.name!, cfg);
  } catch (err) {
    if (!/not found/i.test(String(err))) throw err;
    await jsm.streams.add(cfg);
  }
}

/** `a.b.events` → `a.b.<token>`; a one-token prefix becomes `<token>`. Never under `<prefix>.>`. */
function replaceLastToken(prefix: string, token: string): string {
  const parts = prefix.split('.');
  parts[parts.length - 1] = token;
  return parts.join('.');
}

/**
 * The partition of an event is its hash modulo the partition count, so changing the count would
 * send later copies of an event to another partition than the first: the count is recorded at
 * first start and a different one is refused.
 */
async function checkPartitionCount(kv: KV, partitions: number): Promise<void> {
  const entry = await kv.get(PARTITIONS_KEY);
  if (entry && entry.operation === 'PUT') {
    const recorded = Number(entry.string());
    if (recorded !== partitions) {
      throw new AppError(
        'CONFIG_INVALID',
        `EVENT_PARTITIONS is ${partitions} but this installation's stream was created with ${recorded} partitions; set EVENT_PARTITIONS=${recorded} (the count cannot change without re-partitioning the stream)`,
      );
    }
    return;
  }
  await kv.create(PARTITIONS_KEY, String(partitions)).catch(async () => checkPartitionCount(kv, partitions));
}

/**
 * One durable consumer per partition and one for free-form subjects (the router). An
 * installation from before partitions had one consumer over everything: the router starts where
 * that one had acknowledged, and the old consumer is removed.
 */
async function ensureConsumers(jsm: JetStreamManager, topology: NatsTopology, partitionPrefix: string, logger: Logger): Promise<void> {
  const ackWait = nanos(topology.ackWaitMs ?? 30_000);
  const existing = new Set<string>();
  for await (const c of jsm.consumers.list(topology.stream)) {
    existing.add(c.name);
    if (c.name !== LEGACY_PROCESSOR_CONSUMER && c.config.ack_wait !== ackWait) {
      await jsm.consumers.update(topology.stream, c.name, { ack_wait: ackWait });
    }
  }
  const base = { ack_policy: AckPolicy.Explicit, ack_wait: ackWait, max_ack_pending: 20_000 };
  if (!existing.has(ROUTER_CONSUMER)) {
    let start: { deliver_policy: DeliverPolicy; opt_start_seq?: number } = { deliver_policy: DeliverPolicy.All };
    if (existing.has(LEGACY_PROCESSOR_CONSUMER)) {
      const legacy = await jsm.consumers.info(topology.stream, LEGACY_PROCESSOR_CONSUMER);
      start = { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: legacy.ack_floor.stream_seq + 1 };
      logger.warn({ fromSeq: start.opt_start_seq }, 'moving the processor consumer to partitions: the router starts where it had acknowledged');
    }
    await jsm.consumers.add(topology.stream, { durable_name: ROUTER_CONSUMER, filter_subject: `${topology.subjectPrefix}.>`, ...base, ...start });
    if (existing.has(LEGACY_PROCESSOR_CONSUMER)) await jsm.consumers.delete(topology.stream, LEGACY_PROCESSOR_CONSUMER);
  }
  for (let n = 0; n < topology.partitions; n++) {
    const name = partitionConsumer(n);
    if (!existing.has(name)) {
      await jsm.consumers
        .add(topology.stream, { durable_name: name, filter_subject: `${partitionPrefix}.${n}`, deliver_policy: DeliverPolicy.All, ...base })
        .catch((err: unknown) => {
          if (!/already in use|exists/i.test(String(err))) throw err;
        });
    }
  }
}

/**
 * The keys of KV bucket `bucket` under `filter` that hold a message (a value or a delete marker),
 * in one stream-info request. The KV `keys()` iterator was seen to wait ~30 s for its idle
 * heartbeat when the bucket was written while it listed (partition leases, write-ledger slots).
 */
export async function kvKeys(jsm: JetStreamManager, bucket: string, filter: string): Promise<string[]> {
  const prefix = `$KV.${bucket}.`;
  const si = await jsm.streams.info(`KV_${bucket}`, { subjects_filter: `${prefix}${filter}` });
  return Object.keys(si.state.subjects ?? {}).map((s) => s.slice(prefix.length));
}
