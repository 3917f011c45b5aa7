import { pageQueryProperties, type Listing } from './pagination.ts';

/**
 * OpenAPI pieces of a paginated route (see api/pagination.ts): its query parameters (paging
 * plus the route's own filters) and its `Page` response.
 */
export function pageQuerystring<T>(listing: Listing<T>, extra: Record<string, object> = {}): { type: 'object'; properties: Record<string, object> } {
  return { type: 'object', properties: { ...extra, ...pageQueryProperties(listing as unknown as Listing<unknown>) } };
}

/** The `{ items, page, pageSize, totalCount }` response of a listing of `item`. */
export function pageResponse(item: object): object {
  return {
    type: 'object',
    properties: {
      items: { type: 'array', items: item },
      page: { type: 'integer', description: '1-based page number' },
      pageSize: { type: 'integer' },
      totalCount: { type: 'integer', description: 'items matching the filters, across all pages' },
    },
  };
}

/**
 * The query with `order` defaulted to `desc` for listings whose natural order is newest first
 * (pagination.ts defaults to `asc`); an explicit `order` wins.
 */
export function newestFirst(query: unknown): Record<string, unknown> {
  const q = query && typeof query === 'object' ? (query as Record<string, unknown>) : {};
  return { ...q, order: q.order === undefined || q.order === '' ? 'desc' : q.order };
}
