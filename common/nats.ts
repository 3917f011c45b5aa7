import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { Logger } from './logger.ts';

export interface NatsTopology {
  stream: string;
  dlqStream: string;
  subjectPrefix: string;
  kvBucket: string;
  maxAgeMs: number;
  duplicateWindowMs: number;
}

export interface NatsClients {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  kv: KV;
  topology: NatsTopology;
  /** Subject a batch for `partition` is published to. */
  eventSubject(partition?: string): string;
  dlqSubject: string;
  close(): Promise<void>;
}

export const PROCESSOR_CONSUMER = 'processor';

/** Connects with endless reconnects (producers keep retrying through a NATS restart). */
export async function connectNats(url: string, logger: Logger, name = 'meterline'): Promise<NatsConnection> {
  const nc = await connect({ servers: url, name, maxReconnectAttempts: -1, reconnectTimeWait: 250, pingInterval: 10_000 });
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnect') logger.warn({ status: s.type }, `nats ${s.type}`);
    }
  })();
  return nc;
}

/**
 * Creates (or updates) the streams, the processor's durable consumer and the catalog bucket.
 * Idempotent: every role calls it at start.
 */
export async function openNats(url: string, topology: NatsTopology, logger: Logger, name?: string): Promise<NatsClients> {
  const nc = await connectNats(url, logger, name);
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const eventsCfg = {
    name: topology.stream,
    subjects: [`${topology.subjectPrefix}.>`],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    max_age: nanos(topology.maxAgeMs),
    duplicate_window: nanos(topology.duplicateWindowMs),
    num_replicas: 1,
  };
  await addOrUpdateStream(jsm, eventsCfg);
  const dlqSubject = `${topology.subjectPrefix.split('.')[0]}.deadletter`;
  await addOrUpdateStream(jsm, {
    name: topology.dlqStream,
    subjects: [dlqSubject],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    num_replicas: 1,
  });
  try {
    await jsm.consumers.info(topology.stream, PROCESSOR_CONSUMER);
  } catch {
    await jsm.consumers.add(topology.stream, {
      durable_name: PROCESSOR_CONSUMER,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(60_000),
      max_ack_pending: 20_000,
    });
  }
  const kv = await new Kvm(js).create(topology.kvBucket, { history: 5 });
  return {
    nc,
    js,
    jsm,
    kv,
    topology,
    dlqSubject,
    eventSubject: (partition = '0') => `${topology.subjectPrefix}.${partition}`,
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
