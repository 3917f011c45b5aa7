import type { CatalogReplica } from '../common/catalog.ts';
import type { Store } from '../common/clickhouse.ts';
import type { Leases } from '../common/lease.ts';
import type { Logger } from '../common/logger.ts';
import type { Metrics } from '../common/metrics.ts';
import type { NatsClients } from '../common/nats.ts';
import type { TimeLimits } from '../ingest/index.ts';
import type { Meter } from '../meter/index.ts';
import type { Backfills } from './backfill-schedule.ts';
import type { MessageSource } from './consumer.ts';
import type { DeadLetterEntry } from './dead-letter.ts';
import type { KeyLookups } from './dedup-store.ts';
import type { OwnershipHandlers, Unit } from './ownership.ts';
import type { StreamReader } from './replay.ts';
import type { RoutePublisher } from './router.ts';
import type { Ledger, RowSink } from './writer.ts';

export interface ProcessorOptions {
  dedupWindowMs: number;
  dedupMaxMemoryKeys: number;
  /** Bytes of dedup Bloom filters shared by all partitions (`DEDUP_FILTER_MEMORY`); 0 or unset: none. */
  dedupFilterBytes?: number;
  fetchMessages: number;
  maxEvents: number;
  bufferBytes: number;
  lateAfterMs: number;
  maxDeliveries: number;
  limits: TimeLimits;
  /** This processor's name among those sharing the partitions (default: host and pid). */
  processorId?: string;
  leaseTtlMs: number;
  /** After taking a partition over, fresh keys are also checked in the store for this long. */
  handoverVerifyMs?: number;
  /** A new meter's backfill runs again after this long, for batches that were in flight elsewhere. */
  backfillSettleMs?: number;
}

/** The clients a processor runs on; `natsParts` (wiring.ts) builds its parts from them. */
export interface ProcessorDeps {
  nats: NatsClients;
  store: Store;
  meters: CatalogReplica<Meter>;
  logger: Logger;
  metrics: Metrics;
  /** Backfills run under a lease, so two processors never backfill one meter at once. */
  leases: Leases;
  options: ProcessorOptions;
  /** The clock: the rows' `ingested_at`, dedup windows, retries (default `Date.now`). */
  now?: () => number;
}

/** Who owns which partitions (`Ownership`, through leases in NATS KV). */
export interface PartitionOwnership {
  readonly holder: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The fence checked before writing: true while the lease on `unit` is surely still held. */
  holds(unit: Unit): boolean;
  partitions(): number[];
}

/** What a processor works through: each a small interface, so tests can hand in fakes. */
export interface ProcessorParts {
  /** The event stream's name (in dead letters and insert tokens). */
  stream: string;
  partitions: number;
  source: MessageSource;
  publisher: RoutePublisher;
  reader: StreamReader;
  rows: RowSink;
  lookups: KeyLookups;
  deadLetters: { park(entry: DeadLetterEntry): Promise<void> };
  meters: Pick<CatalogReplica<Meter>, 'list' | 'onChange'>;
  /** Job leases: the maintenance lease, and the backfills'. */
  leases: Pick<Leases, 'holderOf' | 'withLease'>;
  openOwnership(handlers: OwnershipHandlers, log: Logger): Promise<PartitionOwnership>;
  openLedger(holder: string): Promise<Ledger>;
  openBackfiller(beforeInsert: () => Promise<void>, log: Logger): Promise<Backfills>;
  logger: Logger;
  metrics: Metrics;
  options: ProcessorOptions;
  /** The clock (default `Date.now`). */
  now?: () => number;
  /** Waits between retries (default: a timer). */
  sleep?: (ms: number) => Promise<void>;
}
