import { headers as natsHeaders } from '@nats-io/transport-node';
import { partitionConsumer, ROUTER_CONSUMER, type NatsClients } from '../common/nats.ts';
import { RECEIVED_AT_HEADER } from '../ingest/index.ts';
import { Backfiller } from './backfill.ts';
import type { MessageSource, Subscription } from './consumer.ts';
import { DeadLetters } from './dead-letter.ts';
import { ClickHouseKeyLookups } from './dedup-store.ts';
import { Ownership, ROUTER, type Unit } from './ownership.ts';
import { receivedAt, storedTimestampNanos } from './pipeline.ts';
import type { ProcessorDeps, ProcessorParts } from './parts.ts';
import type { StreamReader } from './replay.ts';
import type { RoutePublisher } from './router.ts';
import { BackfillLedger, WriteLedger } from './write-ledger.ts';
import { ClickHouseRowSink } from './writer.ts';

const consumerName = (unit: Unit) => (unit === ROUTER ? ROUTER_CONSUMER : partitionConsumer(unit));

/** The partitions' and the router's JetStream consumers. */
class NatsMessageSource implements MessageSource {
  constructor(private readonly nats: NatsClients) {}

  async consume(unit: Unit, maxBytes: number): Promise<Subscription> {
    const consumer = await this.nats.js.consumers.get(this.nats.topology.stream, consumerName(unit));
    return consumer.consume({ max_bytes: maxBytes });
  }

  async pending(unit: Unit): Promise<{ pending: number; ackPending: number }> {
    const info = await this.nats.jsm.consumers.info(this.nats.topology.stream, consumerName(unit));
    return { pending: info.num_pending, ackPending: info.num_ack_pending };
  }
}

/** Stored messages of the event stream, for repeating a recorded insert. */
class NatsStreamReader implements StreamReader {
  constructor(private readonly nats: NatsClients) {}

  async read(seq: number): Promise<{ data: Uint8Array; receivedAtMs: number } | null> {
    const sm = await this.nats.jsm.streams.getMessage(this.nats.topology.stream, { seq }).catch(() => null);
    if (!sm) return null;
    return { data: sm.data, receivedAtMs: receivedAt(sm.header?.get(RECEIVED_AT_HEADER) || undefined, storedTimestampNanos(sm.timestamp)) };
  }
}

class NatsRoutePublisher implements RoutePublisher {
  constructor(private readonly nats: NatsClients) {}

  maxPayload(): number {
    return this.nats.nc.info?.max_payload ?? 1024 * 1024;
  }

  async publish(partition: number, data: string | Uint8Array, msgID: string, received: string): Promise<void> {
    const h = natsHeaders();
    h.set(RECEIVED_AT_HEADER, received);
    await this.nats.js.publish(this.nats.partitionSubject(partition), data, { msgID, headers: h });
  }
}

/** A processor's parts over NATS JetStream and ClickHouse, as `meterline` runs it. */
export function natsParts(deps: ProcessorDeps): ProcessorParts {
  const { nats, store, options } = deps;
  const { topology } = nats;
  return {
    stream: topology.stream,
    partitions: topology.partitions,
    source: new NatsMessageSource(nats),
    publisher: new NatsRoutePublisher(nats),
    reader: new NatsStreamReader(nats),
    rows: new ClickHouseRowSink(store),
    lookups: new ClickHouseKeyLookups(store),
    deadLetters: new DeadLetters(nats),
    meters: deps.meters,
    leases: deps.leases,
    openOwnership: (handlers, log) =>
      Ownership.open(nats.js, { holder: options.processorId, partitions: topology.partitions, ttlMs: options.leaseTtlMs, replicas: topology.replicas }, handlers, log),
    openLedger: (holder) => WriteLedger.open(nats.js, holder, topology.replicas),
    openBackfiller: async (beforeInsert, log) => new Backfiller(store, log, await BackfillLedger.open(nats.js, topology.replicas), beforeInsert),
    logger: deps.logger,
    metrics: deps.metrics,
    options,
    ...(deps.now ? { now: deps.now } : {}),
  };
}
