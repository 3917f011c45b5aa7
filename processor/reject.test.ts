import { describe, expect, it } from 'vitest';
import { ClickHouseError } from '@clickhouse/client';
import { rejectsTheData } from './writer.ts';

const chError = (type: string, code = '1') => new ClickHouseError({ message: `${type} happened`, code, type });

describe('rejectsTheData: which insert failures are the data, which are the store', () => {
  it('a value ClickHouse cannot parse or store is the data (dead-lettered after the deliveries)', () => {
    for (const t of ['CANNOT_PARSE_INPUT_ASSERTION_FAILED', 'CANNOT_PARSE_DATETIME', 'TYPE_MISMATCH', 'DECIMAL_OVERFLOW', 'TOO_LARGE_STRING_SIZE', 'INCORRECT_DATA']) {
      expect(rejectsTheData(chError(t))).toBe(true);
    }
  });

  it('a store that is away, read-only, full or slow is retried until it is back', () => {
    for (const t of ['TABLE_IS_READ_ONLY', 'NOT_ENOUGH_SPACE', 'TOO_MANY_PARTS', 'TIMEOUT_EXCEEDED', 'MEMORY_LIMIT_EXCEEDED', 'KEEPER_EXCEPTION', 'UNKNOWN_TABLE', 'READONLY']) {
      expect(rejectsTheData(chError(t))).toBe(false);
    }
    expect(rejectsTheData(new Error('connect ECONNREFUSED 127.0.0.1:8123'))).toBe(false);
  });
});
