import { createHash } from 'node:crypto';
import type { Store } from '../common/clickhouse.ts';
import type { Customer, Plan, Subscription } from './catalog.ts';
import type { PeriodAggregateRow } from './aggregates.ts';
import type { AggregateRow } from './contracts.ts';
import { lineSource, type Invoice } from './invoice-types.ts';

export type { AggregateRow } from './contracts.ts';

/** The catalog as an invoice was computed from: a finalized period is priced again with it (corrections, previews). */
export interface Snapshot {
  subscription: Subscription;
  plans: Record<string, Plan>;
  customer: Customer;
}

export interface StoredInvoice {
  invoice: Invoice;
  snapshot: Snapshot;
  subscriptionId: string;
}

export interface FinalizedFilter {
  customer?: string;
  /** Any of these customers (one read for many: the API's accounts overview prices them together). */
  customers?: string[];
  subscriptionId?: string;
  id?: string;
  periodFromMs?: number;
  periodToMs?: number;
}

/** Sort keys of a page of finalized invoices (`ClickHouseInvoiceStore.page`). */
export const InvoiceSorts = ['periodStart', 'number', 'customer', 'total', 'issuedAt'] as const;
export type InvoiceSort = (typeof InvoiceSorts)[number];

/** A page of finalized invoices: filters, order, and the rows [offset, offset + limit). */
export interface InvoicePageQuery {
  customer?: string;
  periodFromMs?: number;
  periodToMs?: number;
  /** Case-insensitive substring of the id, number or customer. */
  q?: string;
  sort: InvoiceSort;
  order: 'asc' | 'desc';
  offset: number;
  limit: number;
}

const SORT_SQL: Record<InvoiceSort, string> = { periodStart: 'min(period_start)', number: 'any(number)', customer: 'any(customer)', total: 'any(total)', issuedAt: 'any(issued_at)' };

/** Finalized invoices (the tables `invoices` and `invoice_lines`). */
export interface InvoiceStore {
  /**
   * Stores finalized, numbered invoices. Lines first, then the invoice rows that make them
   * "finalized"; a retry of the same items duplicates nothing.
   */
  insert(items: StoredInvoice[]): Promise<void>;
  /** Finalized invoices matching `filter`, ordered by period start then id. */
  finalized(filter?: FinalizedFilter): Promise<StoredInvoice[]>;
  /** The period starts (ms) with a finalized invoice, per subscription id. */
  finalizedStarts(): Promise<Map<string, Set<number>>>;
  /** Quantities and amounts of the finalized invoices whose period starts in [fromMs, toMs), per customer, currency, meter, line kind and period start. */
  aggregates(fromMs: number, toMs: number): Promise<PeriodAggregateRow[]>;
}

const ms = (s: string) => Date.parse(s);

/** The InvoiceStore over ClickHouse. */
export class ClickHouseInvoiceStore implements InvoiceStore {
  constructor(private readonly store: Store) {}

  private get db() {
    return this.store.db;
  }

  async insert(items: StoredInvoice[]): Promise<void> {
    const { ch } = this.store;
    const token = createHash('sha256').update(items.map((i) => i.invoice.id).join(',')).digest('hex').slice(0, 32);
    // Lines first, then the invoice rows that make them "finalized": a crash between the two
    // leaves lines without invoices, which the retry (same token) does not duplicate.
    await ch.insert({
      table: `${this.db}.invoice_lines`,
      values: items.flatMap(({ invoice: inv }) =>
        inv.lines.map((l) => ({
          invoice_id: inv.id,
          line_id: l.id,
          customer: inv.customer,
          currency: inv.currency,
          invoice_period_start: ms(inv.periodStart),
          kind: l.kind,
          meter: l.meter ?? '',
          description: l.description,
          period_start: ms(l.periodStart),
          period_end: ms(l.periodEnd),
          quantity: l.quantity,
          amount: l.amount,
          amount_minor: l.amountMinor,
        })),
      ),
      format: 'JSONEachRow',
      clickhouse_settings: { insert_deduplication_token: `lines:${token}` },
    });
    await ch.insert({
      table: `${this.db}.invoices`,
      values: items.map(({ invoice: inv, snapshot, subscriptionId }) => ({
        id: inv.id,
        number: inv.number,
        customer: inv.customer,
        subscription_id: subscriptionId,
        currency: inv.currency,
        period_start: ms(inv.periodStart),
        period_end: ms(inv.periodEnd),
        cutoff: ms(inv.cutoff),
        issued_at: ms(inv.issuedAt!),
        total: inv.total,
        total_minor: inv.totalMinor,
        doc: JSON.stringify(inv),
        snapshot: JSON.stringify(snapshot),
      })),
      format: 'JSONEachRow',
      clickhouse_settings: { insert_deduplication_token: `invoices:${token}` },
    });
  }

  async finalized(filter: FinalizedFilter = {}): Promise<StoredInvoice[]> {
    const where: string[] = ['1'];
    const params: Record<string, unknown> = {};
    const cond = (sql: string, name: string, value: unknown) => {
      if (value === undefined) return;
      where.push(sql);
      params[name] = value;
    };
    cond('customer = {customer:String}', 'customer', filter.customer);
    cond('customer IN {customers:Array(String)}', 'customers', filter.customers);
    cond('subscription_id = {sub:String}', 'sub', filter.subscriptionId);
    cond('id = {id:String}', 'id', filter.id);
    cond(`period_start >= fromUnixTimestamp64Milli({pf:Int64}, 'UTC')`, 'pf', filter.periodFromMs);
    cond(`period_start < fromUnixTimestamp64Milli({pt:Int64}, 'UTC')`, 'pt', filter.periodToMs);
    const rs = await this.store.ch.query({
      query: `SELECT any(doc) AS doc, any(snapshot) AS snapshot, any(subscription_id) AS sub FROM ${this.db}.invoices WHERE ${where.join(' AND ')} GROUP BY id ORDER BY min(period_start), id`,
      query_params: params,
      format: 'JSONEachRow',
    });
    return (await rs.json<{ doc: string; snapshot: string; sub: string }>()).map((r) => ({ invoice: withSources(JSON.parse(r.doc) as Invoice), snapshot: JSON.parse(r.snapshot) as Snapshot, subscriptionId: r.sub }));
  }

  /**
   * One page of finalized invoices and how many match, paged in SQL (a listing of 100,000
   * customers' invoices never leaves ClickHouse whole). Ties are ordered by id.
   */
  async page(q: InvoicePageQuery): Promise<{ invoices: Invoice[]; totalCount: number }> {
    const where: string[] = ['1'];
    const params: Record<string, unknown> = { limit: q.limit, offset: q.offset };
    const cond = (sql: string, name: string, value: unknown) => {
      if (value === undefined) return;
      where.push(sql);
      params[name] = value;
    };
    cond('customer = {customer:String}', 'customer', q.customer);
    cond(`period_start >= fromUnixTimestamp64Milli({pf:Int64}, 'UTC')`, 'pf', q.periodFromMs);
    cond(`period_start < fromUnixTimestamp64Milli({pt:Int64}, 'UTC')`, 'pt', q.periodToMs);
    cond('(positionCaseInsensitiveUTF8(id, {q:String}) > 0 OR positionCaseInsensitiveUTF8(number, {q:String}) > 0 OR positionCaseInsensitiveUTF8(customer, {q:String}) > 0)', 'q', q.q);
    const dir = q.order === 'desc' ? 'DESC' : 'ASC';
    const [rows, count] = await Promise.all([
      this.store.ch.query({
        query: `SELECT any(doc) AS doc FROM ${this.db}.invoices WHERE ${where.join(' AND ')} GROUP BY id ORDER BY ${SORT_SQL[q.sort]} ${dir}, id ${dir} LIMIT {limit:UInt64} OFFSET {offset:UInt64}`,
        query_params: params,
        format: 'JSONEachRow',
      }),
      this.store.ch.query({ query: `SELECT toString(uniqExact(id)) AS n FROM ${this.db}.invoices WHERE ${where.join(' AND ')}`, query_params: params, format: 'JSONEachRow' }),
    ]);
    const invoices = (await rows.json<{ doc: string }>()).map((r) => withSources(JSON.parse(r.doc) as Invoice));
    return { invoices, totalCount: Number((await count.json<{ n: string }>())[0]?.n ?? 0) };
  }

  async finalizedStarts(): Promise<Map<string, Set<number>>> {
    const rs = await this.store.ch.query({
      query: `SELECT subscription_id AS s, toString(toUnixTimestamp64Milli(period_start)) AS p FROM ${this.db}.invoices GROUP BY s, p`,
      format: 'JSONEachRow',
    });
    const out = new Map<string, Set<number>>();
    for (const r of await rs.json<{ s: string; p: string }>()) {
      if (!out.has(r.s)) out.set(r.s, new Set());
      out.get(r.s)!.add(Number(r.p));
    }
    return out;
  }

  async aggregates(fromMs: number, toMs: number): Promise<PeriodAggregateRow[]> {
    const rs = await this.store.ch.query({
      query: `SELECT customer, currency, meter, kind, toString(toUnixTimestamp64Milli(invoice_period_start)) AS period_start_ms,
                     toString(sum(quantity)) AS quantity, toString(sum(amount)) AS amount, toString(sum(amount_minor)) AS amount_minor, toString(count()) AS lines
              FROM ${this.db}.invoice_lines
              WHERE invoice_period_start >= fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND invoice_period_start < fromUnixTimestamp64Milli({to:Int64}, 'UTC')
              GROUP BY customer, currency, meter, kind, invoice_period_start ORDER BY customer, kind, meter`,
      query_params: { from: fromMs, to: toMs },
      format: 'JSONEachRow',
    });
    return (await rs.json<AggregateRow & { period_start_ms: string }>()).map(({ period_start_ms, ...r }) => ({ ...r, periodStartMs: Number(period_start_ms) }));
  }
}

/** An invoice stored before lines carried their `source` gets it from the line ids, so every reader (and the API) sees one shape. */
function withSources(invoice: Invoice): Invoice {
  if (invoice.lines.every((l) => l.source)) return invoice;
  return { ...invoice, lines: invoice.lines.map((l) => (l.source ? l : { ...l, source: lineSource(l) })) };
}
