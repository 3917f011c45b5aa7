import path from 'node:path';
import { z } from 'zod';
import { CLUSTER_NAME_PATTERN } from './cluster-sql.ts';
import { parseDurationMs } from './duration.ts';
import { AppError } from './errors.ts';

const duration = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((v, ctx) => {
      const ms = parseDurationMs(v);
      if (ms === undefined) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: `"${v}" is not a duration; use a number with ms, s, m, h or d, e.g. 30s or 24h` });
        return z.NEVER;
      }
      return ms;
    });

const int = (fallback: number, min = 1) => z.coerce.number().int().min(min).default(fallback);

const BYTE_UNITS = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40 } as const;

/** Parses a byte size: a number of bytes, or with a unit (`KiB`, `MiB`, `GiB`, `TiB`; `KB`, `MB`, `GB`, `TB` are powers of 1000), e.g. `256MiB`, `1.5GiB`. */
export function parseBytes(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$/i.exec(text);
  if (!m) return undefined;
  return Math.floor(Number(m[1]) * BYTE_UNITS[(m[2] ?? 'b').toLowerCase() as keyof typeof BYTE_UNITS]);
}

const byteSize = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((v, ctx) => {
      const bytes = parseBytes(v);
      if (bytes === undefined) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: `"${v}" is not a byte size; use a number of bytes or one with KiB, MiB or GiB, e.g. 256MiB or 1GiB` });
        return z.NEVER;
      }
      return bytes;
    });

/**
 * Every variable Meterline reads, with its default. `.env.example` lists the same set.
 * Secrets (API keys, Stripe keys) have no defaults.
 */
export const ConfigSchema = z.object({
  METERLINE_STATE_DIR: z.string().default('.meterline'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  HOST: z.string().default('127.0.0.1'),
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),

  NATS_URL: z.string().optional(),
  NATS_SERVER_BIN: z.string().default('nats-server'),
  NATS_STREAM: z.string().regex(/^[A-Za-z0-9_-]+$/).default('EVENTS'),
  NATS_DLQ_STREAM: z.string().regex(/^[A-Za-z0-9_-]+$/).default('EVENTS_DLQ'),
  NATS_SUBJECT_PREFIX: z.string().regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/).default('meterline.events'),
  NATS_KV_BUCKET: z.string().regex(/^[A-Za-z0-9_-]+$/).default('meterline_catalog'),
  STREAM_MAX_AGE: duration('7d'),
  STREAM_DUPLICATE_WINDOW: duration('1h'),
  /** Replicas of the streams and KV buckets: 1 on one nats-server, 3 on a 3-node cluster (R3). */
  NATS_REPLICAS: z.coerce.number().int().min(1).max(5).default(1),
  /**
   * Partitions of the event stream, fixed when the stream is first created: an event's partition
   * is a hash of (source, id), and each partition is processed by one processor at a time, so
   * this caps the number of processors that share the work.
   */
  EVENT_PARTITIONS: z.coerce.number().int().min(1).max(256).default(8),

  CLICKHOUSE_URL: z.string().url().optional(),
  CLICKHOUSE_USER: z.string().optional(),
  CLICKHOUSE_PASSWORD: z.string().optional(),
  /** Embedded chDB's data folder; default `<state dir>/clickhouse`. One process owns it. */
  CLICKHOUSE_DATA_DIR: z.string().optional(),
  CLICKHOUSE_DATABASE: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a plain identifier').default('meterline'),
  /**
   * A cluster from the server's `remote_servers` (or a macro such as `{cluster}`): migrations
   * create replicated tables behind Distributed ones, ON CLUSTER (sql/README.md). Unset: one node.
   */
  CLICKHOUSE_CLUSTER: z.string().regex(CLUSTER_NAME_PATTERN, 'must be a cluster name from remote_servers (letters, digits, _ . -) or a macro like {cluster}').optional(),
  /** `meterline store`: the password its clients must send (as CLICKHOUSE_PASSWORD); required to listen beyond loopback. */
  STORE_PASSWORD: z.string().optional(),

  INGEST_MAX_BODY_BYTES: int(1_048_576),
  INGEST_MAX_BATCH_EVENTS: int(10_000),
  INGEST_MAX_FUTURE: duration('10m'),
  INGEST_MAX_PAST: duration('60d'),
  INGEST_PUBLISH_TIMEOUT: duration('5s'),
  INGEST_MAX_INFLIGHT: int(256),

  DEDUP_WINDOW: duration('24h'),
  DEDUP_MAX_MEMORY_KEYS: int(2_000_000, 1000),
  /**
   * Bloom filters behind the exact keys, shared by the partitions a processor could own
   * (this / EVENT_PARTITIONS each): with about 10 bits per key of the window, ~9 % of fresh keys
   * are still looked up in ClickHouse (24 h at 10,000 events/s: 1GiB). 0 turns them off.
   */
  DEDUP_FILTER_MEMORY: byteSize('256MiB'),
  PROCESSOR_FETCH_MESSAGES: int(256),
  PROCESSOR_MAX_EVENTS: int(20_000),
  /** Bytes of stream messages the processor's consumer buffers ahead of its inserts. */
  PROCESSOR_BUFFER_BYTES: int(8 * 1024 * 1024, 65_536),
  PROCESSOR_LATE_AFTER: duration('5m'),
  PROCESSOR_MAX_DELIVERIES: int(5),
  /** This processor's name among the processors sharing partitions (default: host and pid). */
  PROCESSOR_ID: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, "_" or "-"').optional(),
  /** A processor that stops renewing its partitions loses them after this long; others take them over. */
  PROCESSOR_LEASE_TTL: duration('10s'),
  /** A message a processor took but did not ack within this is redelivered (to the partition's owner). */
  PROCESSOR_ACK_WAIT: duration('30s'),

  /** After a period ends, its invoice stays a draft this long, then is finalized. */
  BILLING_GRACE: duration('1h'),
  BILLING_ROUNDING: z.enum(['half_up', 'half_even', 'down', 'up']).default('half_up'),
  /** node-cron expression for the scheduler's close run (every minute by default). */
  BILLING_SCHEDULE: z.string().default('* * * * *'),
  INVOICE_NUMBER_PREFIX: z.string().regex(/^[A-Z0-9-]{1,12}$/, 'must be 1-12 upper-case letters, digits or "-"').default('ML'),
  /** node-cron expression of the anomaly scan (every 5 minutes by default). */
  ANOMALY_SCHEDULE: z.string().default('*/5 * * * *'),
  ANOMALY_BASELINE_WEEKS: int(4),
  ANOMALY_Z_THRESHOLD: z.coerce.number().positive().default(4.5),
  ANOMALY_MIN_RATIO: z.coerce.number().min(1).default(2),
  ANOMALY_MIN_EXPECTED: z.coerce.number().min(0).default(5),
  ANOMALY_GAP_HOURS: int(2),
  /** Projected invoice / median of the last three invoices above which bill shock is raised. */
  ANOMALY_BILL_SHOCK_RATIO: z.coerce.number().min(1).default(1.5),
  /** Complete hours in a row without a detection after which a spike, drop or gap resolves itself; 0: never. */
  ANOMALY_RESOLVE_HOURS: int(2, 0),
  /** Waits between webhook delivery attempts, comma-separated; after the last one a delivery has failed. */
  ALERT_RETRY_DELAYS: z
    .string()
    .default('1m,5m,30m,2h,6h,6h,9h')
    .transform((v, ctx) => {
      const ms = v.split(',').map((d) => parseDurationMs(d.trim()));
      if (ms.some((x) => x === undefined)) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: `"${v}" is not a list of durations; use e.g. 1m,5m,30m,2h` });
        return z.NEVER;
      }
      return ms as number[];
    }),
  /** Stripe secret key; unset: invoices are not pushed to Stripe. */
  STRIPE_API_KEY: z.string().optional(),
  /** Another Stripe-compatible endpoint (tests use a local one), e.g. http://127.0.0.1:12111. */
  STRIPE_API_BASE: z.string().url().optional(),
});

export type Config = z.infer<typeof ConfigSchema> & { stateDir: string };

/** Reads config from an environment; called only from entry points. Fails naming each bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const parsed = ConfigSchema.safeParse(Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== '')));
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new AppError('CONFIG_INVALID', `invalid configuration:\n${lines.join('\n')}`, { details: { issues: parsed.error.issues } });
  }
  if (parsed.data.STREAM_DUPLICATE_WINDOW > parsed.data.STREAM_MAX_AGE) {
    throw new AppError('CONFIG_INVALID', 'invalid configuration:\n  STREAM_DUPLICATE_WINDOW: must not exceed STREAM_MAX_AGE');
  }
  // event_keys (the dedup fallback) keeps keys 31 days: a longer window could not be exact.
  if (parsed.data.DEDUP_WINDOW > 30 * 86_400_000) {
    throw new AppError('CONFIG_INVALID', 'invalid configuration:\n  DEDUP_WINDOW: must be at most 30d (event_keys keeps keys for 31 days)');
  }
  return { ...parsed.data, stateDir: path.resolve(parsed.data.METERLINE_STATE_DIR) };
}
