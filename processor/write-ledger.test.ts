import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ledgerEntry, ledgerRows } from './write-ledger.ts';

describe('write ledger entries', () => {
  it('record the rows of a batch as message sequences and index ranges', () => {
    const rows = [
      { seq: 7, index: 0 },
      { seq: 7, index: 1 },
      { seq: 7, index: 2 },
      { seq: 7, index: 5 },
      { seq: 9, index: 0 },
      { seq: 4, index: 3 },
      { seq: 4, index: 4 },
    ];
    const e = ledgerEntry('EVENTS:4-9:7', [2, 1, 2], 1000, [], rows);
    expect(e.units).toEqual([1, 2]);
    expect(e.messages).toEqual([
      [7, [[0, 2], [5, 5]]],
      [9, [[0, 0]]],
      [4, [[3, 4]]],
    ]);
    expect([...ledgerRows(e)]).toEqual(rows);
  });

  it('give back exactly the rows they were made from, in order', () => {
    const batch = fc.array(fc.record({ seq: fc.integer({ min: 1, max: 1e9 }), keep: fc.array(fc.boolean(), { minLength: 1, maxLength: 40 }) }), { maxLength: 30 }).map((msgs) => {
      // Distinct sequences, as in a batch of messages.
      const seen = new Set<number>();
      return msgs.filter((m) => !seen.has(m.seq) && seen.add(m.seq)).flatMap((m) => m.keep.flatMap((k, index) => (k ? [{ seq: m.seq, index }] : [])));
    });
    fc.assert(
      fc.property(batch, (rows) => {
        const e = ledgerEntry('t', [0], 0, [], rows);
        expect([...ledgerRows(e)]).toEqual(rows);
        expect(JSON.parse(JSON.stringify(e))).toEqual(e);
      }),
    );
  });
});
