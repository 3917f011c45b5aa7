import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, openStore, type Store } from '../common/clickhouse.ts';
import { silentLogger } from '../common/logger.ts';
import type { Aggregation, Meter } from '../meter/index.ts';
import { randomDatabase, tempDir } from '../test/harness.ts';
import { ClickHouseUsageStore } from './store.ts';

/**
 * Usage at a cutoff (usage/cutoff.ts) against embedded ClickHouse: rows of `meter_values`
 * inserted directly, each with its own ingestion time, read at cutoffs before and after them.
 */
const T = (s: string) => Date.parse(s);
const SEP = { start: T('2026-09-01T00:00:00Z'), end: T('2026-10-01T00:00:00Z') };
const CUT = T('2026-10-02T00:00:00Z');
const meter = (id: string, aggregation: Aggregation): Meter => ({ id, slug: id, eventType: 'e', aggregation, createdAt: '2026-01-01T00:00:00Z' });
const tokens = meter('m_tokens', 'SUM');
const latency = meter('m_latency', 'AVG');

describe('usage at a cutoff', () => {
  let store: Store;
  let usage: ClickHouseUsageStore;

  beforeAll(async () => {
    store = await openStore({ dataDir: tempDir('meterline-chdb-'), db: randomDatabase() });
    await migrate(store, silentLogger());
    usage = new ClickHouseUsageStore({ store });
    const row = (m: Meter, subject: string, id: string, time: string, ingested: number, value: string, model = '') => ({
      meter_id: m.id,
      subject,
      time: T(time),
      ingested_at: ingested,
      source: 's',
      id,
      value,
      value_key: value,
      group_by: model ? { model } : {},
    });
    await store.ch.insert({
      table: `${store.db}.meter_values`,
      values: [
        row(tokens, 'acme', 'a1', '2026-09-03T00:00:00Z', T('2026-09-03T00:00:01Z'), '10', 'large'),
        row(tokens, 'acme', 'a2', '2026-09-02T00:00:00Z', T('2026-09-02T00:00:01Z'), '2.5', 'small'),
        row(tokens, 'acme', 'a3', '2026-09-30T23:00:00Z', CUT - 1, '1', 'large'), // in the grace period
        row(tokens, 'acme', 'a4', '2026-09-15T00:00:00Z', CUT + 1, '100', 'large'), // late
        row(tokens, 'acme', 'a5', '2026-10-01T00:00:00Z', T('2026-10-01T00:00:01Z'), '1000'), // next period
        row(tokens, 'globex', 'g1', '2026-09-10T00:00:00Z', T('2026-09-10T00:00:01Z'), '7'),
        row(latency, 'acme', 'l1', '2026-09-05T00:00:00Z', T('2026-09-05T00:00:01Z'), '1'),
        row(latency, 'acme', 'l2', '2026-09-06T00:00:00Z', T('2026-09-06T00:00:01Z'), '2'),
        row(latency, 'acme', 'l3', '2026-09-07T00:00:00Z', T('2026-09-07T00:00:01Z'), '2'),
      ],
      format: 'JSONEachRow',
    });
  });

  afterAll(async () => {
    await store?.close();
  });

  it('one subject, every subject: rows ingested by the cutoff, in the ranges', async () => {
    const q = { ranges: [SEP], cutoffMs: CUT };
    expect(await usage.quantityAtCutoff(tokens, { ...q, subject: 'acme' })).toBe('13.5');
    expect(await usage.quantityAtCutoff(tokens, { ...q, subject: 'acme', cutoffMs: CUT + 1 })).toBe('113.5');
    expect(await usage.quantityAtCutoff(tokens, { ...q, subject: 'nobody' })).toBe('0');
    expect(await usage.quantitiesAtCutoff(tokens, q)).toEqual(new Map([['acme', '13.5'], ['globex', '7']]));
    // Two ranges are one OR: the first days of September plus October.
    const ranges = [{ start: SEP.start, end: T('2026-09-03T00:00:00Z') }, { start: SEP.end, end: T('2026-11-01T00:00:00Z') }];
    expect(await usage.quantityAtCutoff(tokens, { subject: 'acme', ranges, cutoffMs: CUT })).toBe('1002.5');
  });

  it('AVG is the exact sum over the row count, rounded by averageOf', async () => {
    expect(await usage.quantityAtCutoff(latency, { subject: 'acme', ranges: [SEP], cutoffMs: CUT })).toBe('1.666666667');
    expect(await usage.quantitiesAtCutoff(latency, { ranges: [SEP], cutoffMs: CUT })).toEqual(new Map([['acme', '1.666666667']]));
  });

  it('per dimension, and per-event values in event order', async () => {
    const q = { subject: 'acme', ranges: [SEP], cutoffMs: CUT };
    expect(await usage.quantitiesByDimensionAtCutoff(tokens, q, 'model')).toEqual(new Map([['large', '11'], ['small', '2.5']]));
    expect(await usage.valuesAtCutoff(tokens, q)).toEqual(['2.5', '10', '1']);
    expect(await usage.dimensionValuesAtCutoff(tokens, q, 'model')).toEqual([
      { dimension: 'small', value: '2.5' },
      { dimension: 'large', value: '10' },
      { dimension: 'large', value: '1' },
    ]);
  });

  it('rows of a period ingested between two instants: which subjects, how many', async () => {
    expect(await usage.subjectsIngestedBetween(SEP, CUT, CUT + 10)).toEqual(new Set(['acme']));
    expect(await usage.subjectsIngestedBetween(SEP, CUT + 1, CUT + 10)).toEqual(new Set());
    expect(await usage.countIngestedBetween('acme', SEP, CUT - 1, CUT + 1)).toBe(1);
    expect(await usage.countIngestedBetween('acme', SEP, 0, CUT + 1)).toBe(7);
    expect(await usage.countIngestedBetween('globex', SEP, CUT, CUT + 1)).toBe(0);
  });
});
