import { describe, expect, it } from 'vitest';
import { AppError } from '../common/errors.ts';
import { paginate, parsePageQuery, type Listing } from './pagination.ts';

interface Row {
  key: string;
  name?: string;
  n: number;
}
const listing: Listing<Row> = { sort: { key: (r) => r.key, name: (r) => r.name, n: (r) => r.n }, defaultSort: 'key', search: (r) => [r.key, r.name] };
const rows: Row[] = Array.from({ length: 25 }, (_, i) => ({ key: `c${String(i).padStart(2, '0')}`, name: i % 5 === 0 ? undefined : `Acme ${i}`, n: (i * 7) % 10 }));

function errorOf(f: () => unknown): AppError {
  try {
    f();
  } catch (e) {
    return e as AppError;
  }
  throw new Error('expected an error');
}

describe('paginate', () => {
  it('cuts pages in the default order and counts every match', () => {
    const p2 = paginate(rows, listing, parsePageQuery(listing, { page: '2', pageSize: '10' }));
    expect(p2.items.map((r) => r.key)).toEqual(rows.slice(10, 20).map((r) => r.key));
    expect(p2).toMatchObject({ page: 2, pageSize: 10, totalCount: 25 });
    expect(paginate(rows, listing, parsePageQuery(listing, { page: '4', pageSize: '10' })).items).toEqual([]);
  });

  it('sorts by the named key, descending, ties in input order, missing values last', () => {
    const p = paginate(rows, listing, parsePageQuery(listing, { sort: 'n', order: 'desc', pageSize: '1000' }));
    const ns = p.items.map((r) => r.n);
    expect(ns).toEqual([...ns].sort((a, b) => b - a));
    const nines = p.items.filter((r) => r.n === 9).map((r) => r.key);
    expect(nines).toEqual([...nines].sort());
    const byName = paginate(rows, listing, parsePageQuery(listing, { sort: 'name' }));
    expect(byName.items.slice(-5).every((r) => r.name === undefined)).toBe(true);
  });

  it('searches case-insensitively across the listed texts', () => {
    const p = paginate(rows, listing, parsePageQuery(listing, { q: 'ACME 1' }));
    expect(p.items.map((r) => r.key)).toEqual(['c01', 'c11', 'c12', 'c13', 'c14', 'c16', 'c17', 'c18', 'c19']);
    expect(p.totalCount).toBe(9);
  });

  it('refuses bad parameters naming the field and the reason', () => {
    expect(errorOf(() => parsePageQuery(listing, { pageSize: '5000' })).message).toMatch(/query\.pageSize: must be a whole number from 1 to 1000/);
    expect(errorOf(() => parsePageQuery(listing, { page: '0' })).message).toMatch(/query\.page: must be a whole number from 1/);
    expect(errorOf(() => parsePageQuery(listing, { page: 'two' })).message).toMatch(/query\.page/);
    expect(errorOf(() => parsePageQuery(listing, { sort: 'createdAt' })).message).toMatch(/query\.sort: must be one of key, name, n/);
    expect(errorOf(() => parsePageQuery(listing, { order: 'up' })).message).toMatch(/query\.order: must be asc or desc/);
    const noSearch: Listing<Row> = { sort: { key: (r) => r.key }, defaultSort: 'key' };
    expect(errorOf(() => parsePageQuery(noSearch, { q: 'x' })).message).toMatch(/query\.q: this listing has no search/);
  });
});
