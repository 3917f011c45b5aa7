import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { BASE64URL_KEYS, CatalogReplica } from '../common/catalog.ts';
import { Leases } from '../common/lease.ts';
import { Billing, ClickHouseAdjustments, ClickHouseInvoiceStore, InvoiceSync, type Customer, type Plan, type Subscription } from '../rater/index.ts';
import { createStripeClient, StripeSync } from '../rater/stripe/index.ts';
import { AlertDispatcher, AnomalyScanner, ClickHouseAttemptLog, AnomalyStore, DeliveryQueue, type DeliveryQueueOptions, type Threshold, type Webhook } from '../anomaly/index.ts';
import cron, { type ScheduledTask } from 'node-cron';
import { Counter } from 'prom-client';
import { migrate, openStore, type Store } from '../common/clickhouse.ts';
import type { Config } from '../common/config.ts';
import { AppError } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import { createMetrics, type Metrics } from '../common/metrics.ts';
import { openNats, type NatsClients } from '../common/nats.ts';
import { findNatsServers, natsConfPath, procAvailable, procInfo, startNatsServer, terminateProcess, type NatsServerHandle } from '../common/nats-server.ts';
import { startOpsServer } from './ops-server.ts';
import { chdbDir, isMeterline, readRuntimeFile, readRuntimeInfo, runtimeFile, type RuntimeInfo } from './runtime-info.ts';
import { EventPublisher } from '../ingest/index.ts';
import type { Meter } from '../meter/index.ts';
import { DeadLetters, Processor } from '../processor/index.ts';
import { ClickHouseUsageStore } from '../usage/index.ts';
import { ApiKeys, buildApp, PortalTokens, type ApiKeyRecord, type PortalTokenRecord } from '../api/index.ts';

export { chdbDir, readRuntimeInfo, runtimeFile, type RuntimeInfo } from './runtime-info.ts';

export const Roles = ['ingest', 'processor', 'api', 'scheduler'] as const;
export type Role = (typeof Roles)[number];

export interface Runtime {
  config: Config;
  nats: NatsClients;
  natsServer?: NatsServerHandle;
  store?: Store;
  meters: CatalogReplica<Meter>;
  keys: ApiKeys;
  catalog: Awaited<ReturnType<typeof openCatalog>>;
  leases?: Leases;
  metrics: Metrics;
  app?: FastifyInstance;
  processor?: Processor;
  billing?: Billing;
  invoiceSync?: InvoiceSync;
  scanner?: AnomalyScanner;
  alerts?: AlertDispatcher;
  /** Base URL of the HTTP server, when one listens. */
  url?: string;
  /** The admin key created for a new installation (only on its first start). */
  firstAdminKey?: string;
  stop(): Promise<void>;
}

/** The alert delivery queue of an installation: stream, subjects beside the events' (never under them), state bucket. */
export function deliveryQueueOptions(config: Config): DeliveryQueueOptions {
  return {
    stream: `${config.NATS_STREAM}_ALERTS`,
    subject: [...config.NATS_SUBJECT_PREFIX.split('.').slice(0, -1), 'alert-deliveries'].join('.'),
    bucket: `${config.NATS_KV_BUCKET}_alerts`,
    replicas: config.NATS_REPLICAS,
  };
}

/** A ping answered within `ms` (a flush waits through a disconnect, readiness must not). */
async function flushWithin(nats: NatsClients, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([nats.nc.flush().then(() => true, () => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * An embedded store has one owner process, so its processor's name follows its data folder: a
 * restart takes its partitions back at once instead of waiting for its old leases to expire.
 */
function embeddedProcessorId(config: Config): string {
  return `local-${createHash('sha256').update(`${os.hostname()}:${chdbDir(config)}`).digest('hex').slice(0, 16)}`;
}

/**
 * Before a nats-server of our own starts on the state folder's store: the URL of the one a live
 * Meterline runs there, else nothing, after stopping any nats-server an earlier Meterline left
 * running on the store (one that died by SIGKILL in a release before servers died with their
 * parent). Two servers on one JetStream store corrupt it, so a second one is never started.
 * A runtime.json whose pid is dead or now another program's is ignored (and overwritten later).
 */
async function claimNatsStore(config: Config, storeDir: string, logger: Logger): Promise<string | undefined> {
  const recorded = readRuntimeFile(config);
  if (!procAvailable()) return readRuntimeInfo(config)?.natsUrl;
  for (const server of findNatsServers(storeDir)) {
    const parent = procInfo(server.ppid);
    // Its parent is the Meterline that spawned it (a parent only changes when it dies): whose
    // pid runtime.json records, or a process that runs Meterline. Use it, never a second server.
    if (parent && (server.ppid === process.pid || server.ppid === recorded?.pid || isMeterline(parent))) {
      let listen: string | undefined;
      try {
        listen = /^listen:\s*(\S+)/m.exec(fs.readFileSync(natsConfPath(storeDir), 'utf8'))?.[1];
      } catch {
        /* no configuration file: use runtime.json's URL */
      }
      const url = recorded?.pid === server.ppid ? recorded.natsUrl : listen ? `nats://${listen}` : undefined;
      if (!url) throw new AppError('CONFIG_INVALID', `Meterline (pid ${server.ppid}) runs a nats-server (pid ${server.pid}) on ${storeDir} and its URL is unknown; stop it or set NATS_URL`);
      logger.info({ url, natsPid: server.pid, meterlinePid: server.ppid }, 'using the nats-server of the Meterline running on this state folder');
      return url;
    }
    logger.warn(
      { natsPid: server.pid, parentPid: server.ppid, parent: parent?.argv.join(' ') ?? null, storeDir },
      'stopping a nats-server left running on this store by an earlier Meterline (SIGTERM, then SIGKILL): two servers must never share a store',
    );
    await terminateProcess(server.pid);
  }
  if (!recorded) return undefined;
  const owner = recorded.pid === process.pid ? undefined : procInfo(recorded.pid);
  if (owner && isMeterline(owner)) {
    // Its nats-server is between a crash and its restart: wait for it rather than start another.
    logger.warn({ url: recorded.natsUrl, meterlinePid: owner.pid }, 'the Meterline running on this state folder is restarting its nats-server; using it');
    return recorded.natsUrl;
  }
  logger.warn(
    { file: runtimeFile(config), pid: recorded.pid, process: owner ? owner.argv.join(' ') : null },
    `ignoring a stale runtime.json: pid ${recorded.pid} is ${owner ? 'another program now' : 'not running'}; starting a new nats-server`,
  );
  return undefined;
}

/**
 * Embedded ClickHouse is one process per folder: when the Meterline recorded in runtime.json
 * still runs, say so before chDB fails with a lock error that names neither it nor a way out.
 */
function refuseSharedEmbeddedStore(config: Config): void {
  const recorded = readRuntimeFile(config);
  if (!recorded || recorded.pid === process.pid || !procAvailable()) return;
  const owner = procInfo(recorded.pid);
  if (!owner || !isMeterline(owner)) return;
  throw new AppError(
    'STORE_LOCKED',
    `Meterline (pid ${recorded.pid}) is running on ${config.stateDir} and holds its embedded ClickHouse (${chdbDir(config)}). ` +
      'Use that one (its API, or commands such as `meterline keys`), stop it first, run this one with its own METERLINE_STATE_DIR, ' +
      'or share the store: `meterline store`, then CLICKHOUSE_URL for every process',
    { details: { pid: recorded.pid, stateDir: config.stateDir } },
  );
}

/** NATS_URL if set, else a running `meterline start`'s server, else a nats-server of our own. */
export async function resolveNats(
  config: Config,
  logger: Logger,
  hooks: { onRestart?(pid: number | undefined): void } = {},
): Promise<{ url: string; server?: NatsServerHandle }> {
  if (config.NATS_URL) return { url: config.NATS_URL };
  const storeDir = path.join(config.stateDir, 'nats');
  const running = await claimNatsStore(config, storeDir, logger);
  if (running) return { url: running };
  const log = logger.child({ component: 'nats-server' });
  const server = await startNatsServer({
    storeDir,
    bin: config.NATS_SERVER_BIN,
    // Dies with this process, even on SIGKILL; restarted on the same port and store if it dies alone.
    supervise: {
      onExit: (e) => log.error({ pid: e.pid, code: e.code, signal: e.signal, stderr: e.stderr.slice(-2000) }, 'the embedded nats-server died; restarting it'),
      onRestartFailed: (e) => log.error({ err: e.err, attempt: e.attempt, retryInMs: e.retryInMs }, 'the embedded nats-server did not start again; retrying'),
      onRestart: (e) => {
        log.warn({ pid: e.pid, restarts: e.restarts }, 'the embedded nats-server is running again');
        hooks.onRestart?.(e.pid);
      },
    },
  });
  logger.info({ url: server.url, storeDir: server.storeDir, pid: server.pid }, 'started embedded nats-server');
  return { url: server.url, server };
}

export function natsTopology(config: Config) {
  return {
    stream: config.NATS_STREAM,
    dlqStream: config.NATS_DLQ_STREAM,
    subjectPrefix: config.NATS_SUBJECT_PREFIX,
    kvBucket: config.NATS_KV_BUCKET,
    maxAgeMs: config.STREAM_MAX_AGE,
    duplicateWindowMs: config.STREAM_DUPLICATE_WINDOW,
    partitions: config.EVENT_PARTITIONS,
    replicas: config.NATS_REPLICAS,
    ackWaitMs: config.PROCESSOR_ACK_WAIT,
  };
}

export async function openCatalog(nats: NatsClients, logger: Logger) {
  const meters = new CatalogReplica<Meter>(nats.kv, 'meter', logger);
  const keyReplica = new CatalogReplica<ApiKeyRecord>(nats.kv, 'apikey', logger);
  // Customer keys are event subjects (any characters): stored under base64url keys.
  const customers = new CatalogReplica<Customer>(nats.kv, 'customer', logger, BASE64URL_KEYS);
  const plans = new CatalogReplica<Plan>(nats.kv, 'plan', logger);
  const subscriptions = new CatalogReplica<Subscription>(nats.kv, 'subscription', logger);
  const webhooks = new CatalogReplica<Webhook>(nats.kv, 'webhook', logger);
  const thresholds = new CatalogReplica<Threshold>(nats.kv, 'threshold', logger);
  // Customer-portal tokens, under the SHA-256 of the token like API keys.
  const portalReplica = new CatalogReplica<PortalTokenRecord>(nats.kv, 'portaltoken', logger);
  const all = [meters, keyReplica, customers, plans, subscriptions, webhooks, thresholds, portalReplica];
  await Promise.all(all.map((r) => r.start()));
  return { meters, keys: new ApiKeys(keyReplica), portalTokens: new PortalTokens(portalReplica), customers, plans, subscriptions, webhooks, thresholds, stop: () => all.forEach((r) => r.stop()) };
}

/**
 * Starts the given roles in this process. Order of start: NATS (streams, consumer, catalog),
 * ClickHouse (migrations), processor, then HTTP. Order of stop is the reverse: stop accepting
 * requests, drain the processor's batch in flight, close clients, stop an embedded nats-server.
 */
/** `now`: the processor's clock (the rows' `ingested_at`); tests pass one they move to separate billing cutoffs. */
export async function startRuntime(config: Config, roles: readonly Role[], logger: Logger, opts: { now?: () => number } = {}): Promise<Runtime> {
  const metrics = createMetrics();
  const natsRestarts = new Counter({ name: 'meterline_nats_server_restarts_total', help: 'Times the embedded nats-server died on its own and was restarted', registers: [metrics.registry] });
  let writeInfo = () => {};
  const { url: natsUrl, server: natsServer } = await resolveNats(config, logger, {
    onRestart: () => {
      natsRestarts.inc();
      writeInfo();
    },
  });
  const nats = await openNats(natsUrl, natsTopology(config), logger, `meterline-${roles.join('+')}`);
  const catalog = await openCatalog(nats, logger);
  const needsStore = roles.includes('processor') || roles.includes('api') || roles.includes('scheduler');
  if (needsStore && !config.CLICKHOUSE_URL) refuseSharedEmbeddedStore(config);
  const store = needsStore
    ? await openStore({ url: config.CLICKHOUSE_URL, user: config.CLICKHOUSE_USER, password: config.CLICKHOUSE_PASSWORD, dataDir: chdbDir(config), db: config.CLICKHOUSE_DATABASE })
    : undefined;
  if (store) await migrate(store, logger, { cluster: config.CLICKHOUSE_CLUSTER });

  let firstAdminKey: string | undefined;
  if (catalog.keys.list().length === 0 && roles.includes('api')) {
    firstAdminKey = (await catalog.keys.create('first admin key', ['admin'])).key;
    fs.mkdirSync(config.stateDir, { recursive: true });
    fs.writeFileSync(path.join(config.stateDir, 'admin-key'), firstAdminKey + '\n', { mode: 0o600 });
  }

  const leases = store ? await Leases.open(nats.js, { replicas: config.NATS_REPLICAS }) : undefined;
  // Every read of usage (api, rater, anomaly) goes through this one store.
  const usage = store ? new ClickHouseUsageStore({ store, leases, logger }) : undefined;
  const billing = store
    ? new Billing({
        store,
        usage: usage!,
        meters: catalog.meters,
        customers: catalog.customers,
        plans: catalog.plans,
        subscriptions: catalog.subscriptions,
        kv: nats.kv,
        leases: leases!,
        logger: logger.child({ component: 'rater' }),
        options: { graceMs: config.BILLING_GRACE, rounding: config.BILLING_ROUNDING, numberPrefix: config.INVOICE_NUMBER_PREFIX },
      })
    : undefined;

  // Stripe: finalized invoices are pushed by the scheduler when a key is configured.
  const invoiceSync =
    billing && config.STRIPE_API_KEY
      ? new InvoiceSync({
          store: store!,
          billing,
          customers: catalog.customers,
          stripe: new StripeSync({ stripe: createStripeClient({ apiKey: config.STRIPE_API_KEY, ...(config.STRIPE_API_BASE ? { apiBase: config.STRIPE_API_BASE } : {}) }), logger: logger.child({ component: 'stripe' }) }),
          leases: leases!,
          logger: logger.child({ component: 'stripe' }),
        })
      : undefined;

  // Anomaly detection: scanner (scheduler role) and the API over anomalies, thresholds, webhooks.
  const anomalyStore = store ? new AnomalyStore(store) : undefined;
  // Webhook deliveries wait in a JetStream work queue (subjects beside the events', never under them).
  const deliveryQueue = store ? await DeliveryQueue.open(nats.js, nats.jsm, deliveryQueueOptions(config)) : undefined;
  const alerts = store
    ? new AlertDispatcher({
        nc: nats.nc,
        subjectPrefix: `${config.NATS_SUBJECT_PREFIX.split('.')[0]}.alerts`,
        webhooks: catalog.webhooks,
        attempts: new ClickHouseAttemptLog(store, logger.child({ component: 'alerts' })),
        queue: deliveryQueue!,
        retryDelaysMs: config.ALERT_RETRY_DELAYS,
        metrics,
        logger: logger.child({ component: 'alerts' }),
      })
    : undefined;
  // Processes that may raise alerts (the scan's scheduler, the API's scan) attempt them too: one shared consumer.
  if (alerts && (roles.includes('api') || roles.includes('scheduler'))) await alerts.start();
  const scanner =
    store && anomalyStore && alerts
      ? new AnomalyScanner({
          usage: usage!,
          meters: catalog.meters,
          customers: catalog.customers,
          thresholds: catalog.thresholds,
          billing,
          anomalies: anomalyStore,
          alerts,
          leases: leases!,
          logger: logger.child({ component: 'anomaly' }),
          params: { baselineWeeks: config.ANOMALY_BASELINE_WEEKS, zThreshold: config.ANOMALY_Z_THRESHOLD, minRatio: config.ANOMALY_MIN_RATIO, minExpected: config.ANOMALY_MIN_EXPECTED, gapHours: config.ANOMALY_GAP_HOURS },
          billShockRatio: config.ANOMALY_BILL_SHOCK_RATIO,
          ...(config.ANOMALY_RESOLVE_HOURS > 0 ? { recovery: { records: anomalyStore, normalHours: config.ANOMALY_RESOLVE_HOURS } } : {}),
        })
      : undefined;

  const limits = { maxFutureMs: config.INGEST_MAX_FUTURE, maxPastMs: config.INGEST_MAX_PAST };
  let processor: Processor | undefined;
  if (roles.includes('processor')) {
    processor = new Processor({
      nats,
      store: store!,
      meters: catalog.meters,
      logger,
      metrics,
      leases: leases!,
      options: {
        processorId: config.PROCESSOR_ID ?? (store!.embedded ? embeddedProcessorId(config) : undefined),
        leaseTtlMs: config.PROCESSOR_LEASE_TTL,
        // A dead owner's last insert can land late; its messages come back after the ack wait.
        handoverVerifyMs: 2 * config.PROCESSOR_ACK_WAIT + config.PROCESSOR_LEASE_TTL,
        dedupWindowMs: config.DEDUP_WINDOW,
        dedupMaxMemoryKeys: config.DEDUP_MAX_MEMORY_KEYS,
        dedupFilterBytes: config.DEDUP_FILTER_MEMORY,
        fetchMessages: config.PROCESSOR_FETCH_MESSAGES,
        maxEvents: config.PROCESSOR_MAX_EVENTS,
        bufferBytes: config.PROCESSOR_BUFFER_BYTES,
        lateAfterMs: config.PROCESSOR_LATE_AFTER,
        maxDeliveries: config.PROCESSOR_MAX_DELIVERIES,
        limits,
      },
      ...(opts.now ? { now: opts.now } : {}),
    });
    await processor.start();
  }

  let app: FastifyInstance | undefined;
  let ops: Awaited<ReturnType<typeof startOpsServer>> | undefined;
  let url: string | undefined;
  const ready = async () => ({
    // The embedded nats-server is down (and being restarted): a reason of its own in /readyz.
    ...(natsServer ? { natsServer: natsServer.running } : {}),
    nats: natsServer?.running !== false && !nats.nc.isClosed() && nats.nc.info !== undefined && (await flushWithin(nats, 2_000)),
    ...(store ? { clickhouse: await store.ch.ping().then((r) => r.success, () => false) } : {}),
    ...(processor ? { processor: processor.healthy } : {}),
    // A partition whose writes have kept failing for a minute (the store away or refusing):
    // events are safe in the stream but not counted; meterline_processor_stuck_partitions says how many.
    ...(processor ? { processorWrites: processor.stuckPartitions().length === 0 } : {}),
  });
  if (roles.includes('ingest') || roles.includes('api')) {
    const publisher = new EventPublisher(nats.js, (n) => nats.partitionSubject(n), {
      partitions: config.EVENT_PARTITIONS,
      timeoutMs: config.INGEST_PUBLISH_TIMEOUT,
      maxInflight: config.INGEST_MAX_INFLIGHT,
      maxPayloadBytes: () => nats.nc.info?.max_payload ?? 1024 * 1024,
      metrics,
    });
    app = await buildApp({
      logger,
      metrics,
      usage: roles.includes('api') ? usage : undefined,
      meters: catalog.meters,
      keys: catalog.keys,
      portalTokens: catalog.portalTokens,
      publisher,
      deadLetters: new DeadLetters(nats),
      ...(billing
        ? {
            billing: {
              billing,
              customers: catalog.customers,
              plans: catalog.plans,
              subscriptions: catalog.subscriptions,
              // Invoice listings page in ClickHouse.
              invoicePages: new ClickHouseInvoiceStore(store!),
              ...(invoiceSync ? { stripe: { status: (id: string) => invoiceSync.status(id), reconcile: () => invoiceSync.reconcile() } } : {}),
            },
          }
        : {}),
      ingest: { maxBodyBytes: config.INGEST_MAX_BODY_BYTES, maxBatchEvents: config.INGEST_MAX_BATCH_EVENTS, limits },
      // The accounts overview prices many customers over shared reads of the rater's stores.
      ...(store ? { accounts: { pricing: { invoices: new ClickHouseInvoiceStore(store), adjustments: new ClickHouseAdjustments(store), rounding: config.BILLING_ROUNDING } } } : {}),
      ...(scanner && anomalyStore && alerts ? { anomalies: { anomalies: anomalyStore, scanner, alerts, webhooks: catalog.webhooks, thresholds: catalog.thresholds } } : {}),
      ready,
    });
    url = await app.listen({ host: config.HOST, port: config.PORT });
  } else {
    // A processor or scheduler on its own: probes and metrics on PORT.
    ops = await startOpsServer({ host: config.HOST, port: config.PORT, metrics, keys: catalog.keys, ready, alive: () => processor?.healthy ?? true });
    url = ops.url;
  }

  // The scheduler: billing close (then Stripe sync) and the anomaly scan, each under its own
  // lease inside, so any number of schedulers run one close and one scan at a time.
  const tasks: ScheduledTask[] = [];
  const schedule = (expr: string, name: string, component: string, job: (log: Logger) => Promise<void>) => {
    const log = logger.child({ component });
    tasks.push(
      cron.schedule(
        expr,
        async () => {
          try {
            await job(log);
          } catch (err) {
            log.error({ err }, `${name} failed; it runs again at the next tick`);
          }
        },
        { name, noOverlap: true },
      ),
    );
  };
  if (roles.includes('scheduler') && billing) {
    schedule(config.BILLING_SCHEDULE, 'billing-close', 'scheduler', async (log) => {
      const r = await billing.runDue(Date.now());
      if (r.finalized.length > 0) log.info({ invoices: r.finalized.length }, 'billing close finalized invoices');
      if (invoiceSync) {
        const sync = await invoiceSync.run();
        if (sync.synced + sync.failed > 0) log.info(sync, 'Stripe sync run');
      }
    });
  }
  if (roles.includes('scheduler') && scanner) {
    schedule(config.ANOMALY_SCHEDULE, 'anomaly-scan', 'anomaly', async (log) => {
      const r = await scanner.scan(Date.now());
      if (r.opened > 0) log.info(r, 'anomaly scan opened anomalies');
    });
  }

  if (natsServer || roles.length === Roles.length) {
    writeInfo = () => {
      fs.mkdirSync(config.stateDir, { recursive: true });
      const info: RuntimeInfo = { pid: process.pid, natsUrl, ...(url ? { httpUrl: url } : {}), ...(natsServer?.pid ? { natsPid: natsServer.pid } : {}) };
      fs.writeFileSync(runtimeFile(config), JSON.stringify(info, null, 2));
    };
    writeInfo();
  }

  let stopped = false;
  return {
    config,
    nats,
    natsServer,
    store,
    meters: catalog.meters,
    keys: catalog.keys,
    catalog,
    leases,
    metrics,
    app,
    processor,
    billing,
    invoiceSync,
    scanner,
    alerts,
    url,
    firstAdminKey,
    async stop() {
      if (stopped) return;
      stopped = true;
      writeInfo = () => {};
      for (const t of tasks) await t.stop();
      await app?.close();
      await ops?.close();
      await processor?.stop();
      await alerts?.stop();
      catalog.stop();
      await nats.close();
      await store?.close();
      await natsServer?.stop();
      try {
        const info = JSON.parse(fs.readFileSync(runtimeFile(config), 'utf8')) as RuntimeInfo;
        if (info.pid === process.pid) fs.rmSync(runtimeFile(config));
      } catch {
        /* not ours */
      }
    },
  };
}
