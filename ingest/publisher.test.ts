import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'lossless-json';
import { partitionOf } from '../common/partition.ts';
import { groupByPartition, splitArray } from './publisher.ts';

const ev = (id: string, tokens = '1') => parse(`{"specversion":"1.0","source":"s","id":"${id}","type":"t","subject":"c","data":{"tokens":${tokens}}}`);

describe('groupByPartition', () => {
  it('one partition: the body is kept as received (no texts)', () => {
    expect([...groupByPartition([ev('a'), ev('b')], 1)]).toEqual([[0, undefined]]);
  });

  it('splits a batch by partition, in order, keeping every digit of every number', () => {
    const items = Array.from({ length: 40 }, (_, i) => ev(`e${i}`, i === 3 ? '12345678901234567890.000000001' : String(i)));
    const groups = groupByPartition(items, 4);
    expect(groups.size).toBeGreaterThan(1);
    const seen: string[] = [];
    for (const [p, texts] of groups) {
      for (const t of texts!) {
        const e = parse(t) as { id: string };
        expect(partitionOf('s', e.id, 4)).toBe(p);
        seen.push(e.id);
      }
    }
    expect(seen.sort()).toEqual(items.map((e) => (e as { id: string }).id).sort());
    const all = [...groups.values()].flat().join(',');
    expect(all).toContain('"tokens":12345678901234567890.000000001');
  });
});

describe('splitArray', () => {
  it('packs texts into arrays under the byte limit', () => {
    const texts = Array.from({ length: 100 }, (_, i) => stringify(ev(`id-${i}`))!);
    const chunks = splitArray(texts, 1_000);
    expect(chunks.length).toBeGreaterThan(1);
    for (const c of chunks) expect(Buffer.byteLength(c)).toBeLessThanOrEqual(1_000);
    expect(chunks.flatMap((c) => JSON.parse(c) as unknown[])).toHaveLength(100);
  });
});
