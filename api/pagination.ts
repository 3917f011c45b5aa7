import { z } from 'zod';
import type { Page } from './contracts.ts';
import { parseWith } from './http.ts';

export type { Page } from './contracts.ts';

/** Largest page a listing serves; a client wanting everything walks the pages. */
export const MAX_PAGE_SIZE = 1000;
export const DEFAULT_PAGE_SIZE = 100;

/** How one listing may be sorted and searched. */
export interface Listing<T> {
  /** Sort keys the client may name in `sort`, each giving the value compared. */
  sort: Record<string, (item: T) => string | number | undefined>;
  /** The sort used when the request names none (ascending unless `order` says otherwise). */
  defaultSort: string;
  /** The texts `q` is matched against, case-insensitively, as a substring; absent: `q` is refused. */
  search?: (item: T) => (string | undefined)[];
}

/** The query parameters every paginated listing takes, plus the listing's own filters (`extra`). */
export function pageQuerySchema<T>(listing: Listing<T>) {
  const keys = Object.keys(listing.sort) as [string, ...string[]];
  return z.object({
    page: z.coerce.number({ invalid_type_error: 'must be a whole number from 1' }).int('must be a whole number from 1').min(1, 'must be a whole number from 1').default(1),
    pageSize: z.coerce
      .number({ invalid_type_error: `must be a whole number from 1 to ${MAX_PAGE_SIZE}` })
      .int(`must be a whole number from 1 to ${MAX_PAGE_SIZE}`)
      .min(1, `must be a whole number from 1 to ${MAX_PAGE_SIZE}`)
      .max(MAX_PAGE_SIZE, `must be a whole number from 1 to ${MAX_PAGE_SIZE}; walk the pages for more`)
      .default(DEFAULT_PAGE_SIZE),
    sort: z.enum(keys, { errorMap: () => ({ message: `must be one of ${keys.join(', ')}` }) }).default(listing.defaultSort),
    order: z.enum(['asc', 'desc'], { errorMap: () => ({ message: 'must be asc or desc' }) }).default('asc'),
    q: z.string().max(200, 'must be at most 200 characters').optional(),
  });
}
export type PageQuery = z.infer<ReturnType<typeof pageQuerySchema>>;

/** OpenAPI `querystring` properties of the paging parameters, for route schemas. */
export function pageQueryProperties(listing: Listing<unknown>): Record<string, object> {
  return {
    page: { type: 'integer', minimum: 1, description: '1-based page number (default 1)' },
    pageSize: { type: 'integer', minimum: 1, maximum: MAX_PAGE_SIZE, description: `items per page (default ${DEFAULT_PAGE_SIZE})` },
    sort: { type: 'string', enum: Object.keys(listing.sort), description: `sort key (default ${listing.defaultSort})` },
    order: { type: 'string', enum: ['asc', 'desc'] },
    ...(listing.search ? { q: { type: 'string', description: 'case-insensitive substring search' } } : {}),
  };
}

/** Parses the paging parameters of `query` with errors naming the field (`query.pageSize: ...`). */
export function parsePageQuery<T>(listing: Listing<T>, query: unknown): PageQuery {
  const q = query && typeof query === 'object' ? (query as Record<string, unknown>) : {};
  const picked = Object.fromEntries(['page', 'pageSize', 'sort', 'order', 'q'].filter((k) => q[k] !== undefined && q[k] !== '').map((k) => [k, q[k]]));
  const parsed = parseWith(pageQuerySchema(listing), picked, 'query');
  if (parsed.q !== undefined && !listing.search) parseWith(z.object({ q: z.undefined({ invalid_type_error: 'this listing has no search' }) }), { q: parsed.q }, 'query');
  return parsed;
}

function compare(a: string | number | undefined, b: string | number | undefined): number {
  if (a === b) return 0;
  if (a === undefined) return 1; // missing values last
  if (b === undefined) return -1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a).localeCompare(String(b));
}

/**
 * Filters `rows` by `q`, sorts them (stably, missing values last) and cuts the requested page.
 * For in-memory listings (the catalog replicas hold every item); a listing backed by a table
 * pages in its query instead and returns the same shape.
 */
export function paginate<T>(rows: readonly T[], listing: Listing<T>, query: PageQuery): Page<T> {
  const needle = query.q?.toLowerCase();
  const matching = needle && listing.search ? rows.filter((r) => listing.search!(r).some((t) => t?.toLowerCase().includes(needle))) : [...rows];
  const key = listing.sort[query.sort] ?? listing.sort[listing.defaultSort]!;
  const dir = query.order === 'desc' ? -1 : 1;
  const sorted = matching.map((r, i) => ({ r, i, k: key(r) })).sort((a, b) => dir * compare(a.k, b.k) || a.i - b.i);
  const from = (query.page - 1) * query.pageSize;
  return { items: sorted.slice(from, from + query.pageSize).map((x) => x.r), page: query.page, pageSize: query.pageSize, totalCount: matching.length };
}
