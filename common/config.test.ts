import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from './config.ts';
import { AppError } from './errors.ts';

/** The error loadConfig throws for `env`; fails the test if it does not throw an AppError. */
function configError(env: Record<string, string | undefined>): AppError {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error(`expected loadConfig(${JSON.stringify(env)}) to fail`);
}

describe('loadConfig defaults', () => {
  const config = loadConfig({});

  it.each<[string, unknown]>([
    ['METERLINE_STATE_DIR', '.meterline'],
    ['LOG_LEVEL', 'info'],
    ['HOST', '127.0.0.1'],
    ['PORT', 8080],
    ['NATS_URL', undefined],
    ['NATS_SERVER_BIN', 'nats-server'],
    ['NATS_STREAM', 'EVENTS'],
    ['NATS_DLQ_STREAM', 'EVENTS_DLQ'],
    ['NATS_SUBJECT_PREFIX', 'meterline.events'],
    ['NATS_KV_BUCKET', 'meterline_catalog'],
    ['STREAM_MAX_AGE', 7 * 86_400_000],
    ['STREAM_DUPLICATE_WINDOW', 3_600_000],
    ['CLICKHOUSE_URL', undefined],
    ['CLICKHOUSE_PASSWORD', undefined],
    ['CLICKHOUSE_DATABASE', 'meterline'],
    ['INGEST_MAX_BODY_BYTES', 1_048_576],
    ['INGEST_MAX_BATCH_EVENTS', 10_000],
    ['INGEST_MAX_FUTURE', 600_000],
    ['INGEST_MAX_PAST', 60 * 86_400_000],
    ['INGEST_PUBLISH_TIMEOUT', 5_000],
    ['INGEST_MAX_INFLIGHT', 256],
    ['DEDUP_WINDOW', 86_400_000],
    ['DEDUP_MAX_MEMORY_KEYS', 2_000_000],
    ['DEDUP_FILTER_MEMORY', 256 * 2 ** 20],
    ['PROCESSOR_FETCH_MESSAGES', 256],
    ['PROCESSOR_MAX_EVENTS', 20_000],
    ['PROCESSOR_LATE_AFTER', 300_000],
    ['PROCESSOR_MAX_DELIVERIES', 5],
  ])('%s defaults to %j', (name, value) => {
    expect(config[name as keyof typeof config]).toEqual(value);
  });

  it('resolves the state directory to an absolute path', () => {
    expect(config.stateDir).toBe(path.resolve('.meterline'));
    expect(loadConfig({ METERLINE_STATE_DIR: '/var/lib/meterline' }).stateDir).toBe('/var/lib/meterline');
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ PORT: '', DEDUP_WINDOW: '', LOG_LEVEL: undefined }).PORT).toBe(8080);
    expect(loadConfig({ DEDUP_WINDOW: '' }).DEDUP_WINDOW).toBe(86_400_000);
  });
});

describe('loadConfig values', () => {
  it.each<[Record<string, string>, string, unknown]>([
    [{ PORT: '0' }, 'PORT', 0],
    [{ PORT: '65535' }, 'PORT', 65_535],
    [{ PORT: '9000' }, 'PORT', 9_000],
    [{ DEDUP_WINDOW: '90m' }, 'DEDUP_WINDOW', 5_400_000],
    [{ DEDUP_WINDOW: '1.5h' }, 'DEDUP_WINDOW', 5_400_000],
    [{ INGEST_MAX_PAST: '400d' }, 'INGEST_MAX_PAST', 400 * 86_400_000],
    [{ DEDUP_MAX_MEMORY_KEYS: '1000' }, 'DEDUP_MAX_MEMORY_KEYS', 1_000],
    [{ DEDUP_FILTER_MEMORY: '1GiB' }, 'DEDUP_FILTER_MEMORY', 2 ** 30],
    [{ DEDUP_FILTER_MEMORY: '1.5 GiB' }, 'DEDUP_FILTER_MEMORY', 1.5 * 2 ** 30],
    [{ DEDUP_FILTER_MEMORY: '512mib' }, 'DEDUP_FILTER_MEMORY', 2 ** 29],
    [{ DEDUP_FILTER_MEMORY: '100MB' }, 'DEDUP_FILTER_MEMORY', 100_000_000],
    [{ DEDUP_FILTER_MEMORY: '65536' }, 'DEDUP_FILTER_MEMORY', 65_536],
    [{ DEDUP_FILTER_MEMORY: '0' }, 'DEDUP_FILTER_MEMORY', 0],
    [{ LOG_LEVEL: 'debug' }, 'LOG_LEVEL', 'debug'],
    [{ NATS_SUBJECT_PREFIX: 'acme.usage.v1' }, 'NATS_SUBJECT_PREFIX', 'acme.usage.v1'],
    [{ CLICKHOUSE_URL: 'http://localhost:8123' }, 'CLICKHOUSE_URL', 'http://localhost:8123'],
    [{ CLICKHOUSE_DATABASE: 'tenant_42' }, 'CLICKHOUSE_DATABASE', 'tenant_42'],
    [{ STREAM_MAX_AGE: '1h', STREAM_DUPLICATE_WINDOW: '1h' }, 'STREAM_DUPLICATE_WINDOW', 3_600_000],
  ])('%j sets %s to %j', (env, name, value) => {
    const config = loadConfig(env);
    expect(config[name as keyof typeof config]).toEqual(value);
  });

  it('ignores variables it does not know', () => {
    expect(loadConfig({ PATH: '/usr/bin', HOME: '/root' })).not.toHaveProperty('PATH');
  });
});

describe('loadConfig failures name the variable and the reason', () => {
  it.each<[Record<string, string>, string, string | RegExp]>([
    [{ DEDUP_WINDOW: 'abc' }, 'DEDUP_WINDOW', '"abc" is not a duration; use a number with ms, s, m, h or d, e.g. 30s or 24h'],
    [{ DEDUP_WINDOW: '24' }, 'DEDUP_WINDOW', '"24" is not a duration'],
    [{ STREAM_MAX_AGE: '-1d' }, 'STREAM_MAX_AGE', '"-1d" is not a duration'],
    [{ PORT: '99999' }, 'PORT', /less than or equal to 65535/],
    [{ PORT: '-1' }, 'PORT', /greater than or equal to 0/],
    [{ PORT: 'http' }, 'PORT', /Expected number, received nan/],
    [{ PORT: '80.5' }, 'PORT', /Expected integer/],
    [{ LOG_LEVEL: 'verbose' }, 'LOG_LEVEL', /Expected 'fatal' \| 'error'/],
    [{ NATS_STREAM: 'EVENTS.V2' }, 'NATS_STREAM', /Invalid/],
    [{ NATS_SUBJECT_PREFIX: 'meterline.>' }, 'NATS_SUBJECT_PREFIX', /Invalid/],
    [{ CLICKHOUSE_URL: 'not a url' }, 'CLICKHOUSE_URL', /Invalid url/],
    [{ CLICKHOUSE_DATABASE: 'meterline; DROP TABLE x' }, 'CLICKHOUSE_DATABASE', 'must be a plain identifier'],
    [{ DEDUP_MAX_MEMORY_KEYS: '999' }, 'DEDUP_MAX_MEMORY_KEYS', /greater than or equal to 1000/],
    [{ DEDUP_FILTER_MEMORY: '1G' }, 'DEDUP_FILTER_MEMORY', '"1G" is not a byte size; use a number of bytes or one with KiB, MiB or GiB'],
    [{ DEDUP_FILTER_MEMORY: '-1MiB' }, 'DEDUP_FILTER_MEMORY', '"-1MiB" is not a byte size'],
    [{ INGEST_MAX_BATCH_EVENTS: '0' }, 'INGEST_MAX_BATCH_EVENTS', /greater than or equal to 1/],
    [{ PROCESSOR_MAX_DELIVERIES: 'five' }, 'PROCESSOR_MAX_DELIVERIES', /Expected number/],
    [{ STREAM_DUPLICATE_WINDOW: '8d' }, 'STREAM_DUPLICATE_WINDOW', 'must not exceed STREAM_MAX_AGE'],
    [{ STREAM_MAX_AGE: '30m' }, 'STREAM_DUPLICATE_WINDOW', 'must not exceed STREAM_MAX_AGE'],
  ])('%j fails naming %s', (env, name, reason) => {
    const err = configError(env);
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.retryable).toBe(false);
    const line = err.message.split('\n').find((l) => l.startsWith(`  ${name}: `));
    expect(line, err.message).toBeDefined();
    expect(line!.slice(`  ${name}: `.length)).toMatch(typeof reason === 'string' ? new RegExp(reason.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : reason);
  });

  it('names every bad variable at once, and no good one', () => {
    const err = configError({ PORT: '99999', DEDUP_WINDOW: 'abc', HOST: '0.0.0.0', LOG_LEVEL: 'loud' });
    const named = err.message
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(':')[0]);
    expect(named.sort()).toEqual(['DEDUP_WINDOW', 'LOG_LEVEL', 'PORT']);
    expect(err.message.startsWith('invalid configuration:\n')).toBe(true);
  });
});

describe('DEDUP_WINDOW upper bound', () => {
  it('rejects a window longer than the 31-day key retention of event_keys', () => {
    expect(() => loadConfig({ DEDUP_WINDOW: '45d' })).toThrow(/DEDUP_WINDOW: must be at most 30d/);
    expect(loadConfig({ DEDUP_WINDOW: '30d' }).DEDUP_WINDOW).toBe(30 * 86_400_000);
  });
});
