import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'lossless-json';
import { partitionOf } from '../common/partition.ts';
import { groupByPartition, parsedBatch, partitionMessages, splitArray, type ParsedBatch } from './publisher.ts';

const evText = (id: string, tokens = '1') => `{"specversion":"1.0","source":"s","id":"${id}","type":"t","subject":"c","data":{"tokens":${tokens}}}`;

/** A batch as ingest parses it: JSON.parse (numbers rounded), texts sliced from the body. */
const ingestBatch = (body: string): ParsedBatch => parsedBatch(body, JSON.parse(body));

describe('groupByPartition', () => {
  it('one partition: the body is kept as received (no texts)', () => {
    expect([...groupByPartition(ingestBatch(`[${evText('a')},${evText('b')}]`), 1)]).toEqual([[0, undefined]]);
  });

  it('splits a batch by partition, in order, keeping every event text byte for byte', () => {
    const texts = Array.from({ length: 40 }, (_, i) => evText(`e${i}`, i === 3 ? '12345678901234567890.000000001' : i === 4 ? '1.50' : String(i)));
    const groups = groupByPartition(ingestBatch(`[\n  ${texts.join(',\n  ')}\n]`), 4);
    expect(groups.size).toBeGreaterThan(1);
    const seen: string[] = [];
    for (const [p, group] of groups) {
      for (const t of group!) {
        const e = parse(t) as { id: string };
        expect(partitionOf('s', e.id, 4)).toBe(p);
        seen.push(t);
      }
    }
    expect(seen.sort()).toEqual([...texts].sort());
    const all = [...groups.values()].flat().join(',');
    expect(all).toContain('"tokens":12345678901234567890.000000001');
    expect(all).toContain('"tokens":1.50}');
  });
});

describe('partitionMessages', () => {
  it('a batch whose events were parsed with JSON.parse still stores every digit', () => {
    const body = `[${Array.from({ length: 30 }, (_, i) => evText(`id-${i}`, '12345678901234567890.5')).join(',')}]`;
    const messages = partitionMessages(body, ingestBatch(body), 8, 1_000_000);
    expect(messages.length).toBeGreaterThan(1);
    const events = messages.flatMap((m) => parse(m.data) as { data: unknown }[]);
    expect(events).toHaveLength(30);
    for (const e of events) expect(stringify(e.data)).toBe('{"tokens":12345678901234567890.5}');
  });

  it('splits one partition over several messages when the body is over the limit', () => {
    const body = `[${Array.from({ length: 50 }, (_, i) => evText(`x-${i}`)).join(',')}]`;
    const messages = partitionMessages(body, ingestBatch(body), 1, 2_000);
    expect(messages.length).toBeGreaterThan(1);
    expect(messages.map((m) => m.part)).toEqual(messages.map((_, i) => `#${i}/${messages.length}`));
    expect(messages.flatMap((m) => JSON.parse(m.data) as unknown[])).toHaveLength(50);
  });
});

describe('splitArray', () => {
  it('packs texts into arrays under the byte limit', () => {
    const texts = Array.from({ length: 100 }, (_, i) => evText(`id-${i}`));
    const chunks = splitArray(texts, 1_000);
    expect(chunks.length).toBeGreaterThan(1);
    for (const c of chunks) expect(Buffer.byteLength(c)).toBeLessThanOrEqual(1_000);
    expect(chunks.flatMap((c) => JSON.parse(c) as unknown[])).toHaveLength(100);
  });
});
