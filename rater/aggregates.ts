import { Decimal } from '../common/decimal.ts';
import type { AggregateRow } from './contracts.ts';
import { localParts } from './periods.ts';

/** Finance aggregates of one invoice period start: what the invoice store sums per customer, currency, meter, kind and period start. */
export interface PeriodAggregateRow extends AggregateRow {
  /** The invoices' period start (ms). */
  periodStartMs: number;
}

/**
 * Time zones run from UTC-12 to UTC+14: the invoices whose period starts in a local month all start
 * within this margin of the UTC month, so the store is asked for the UTC month widened by it.
 */
export const TIME_ZONE_MARGIN_MS = 15 * 3_600_000;

/** The UTC range to read for `month` (YYYY-MM), wide enough for every time zone. */
export function monthReadRange(month: string): { fromMs: number; toMs: number } {
  const [y, m] = month.split('-').map(Number) as [number, number];
  return { fromMs: Date.UTC(y, m - 1, 1) - TIME_ZONE_MARGIN_MS, toMs: Date.UTC(y, m, 1) + TIME_ZONE_MARGIN_MS };
}

/**
 * The month's aggregates, each invoice filed by the month its period starts in the customer's own
 * time zone (a Tokyo customer's November starts on 31 October in UTC and belongs to November),
 * summed exactly per customer, currency, meter and kind.
 */
export function fileByLocalMonth(rows: readonly PeriodAggregateRow[], month: string, timeZoneOf: (customer: string) => string): AggregateRow[] {
  const sums = new Map<string, { row: AggregateRow; quantity: Decimal; amount: Decimal; minor: Decimal; lines: number }>();
  for (const r of rows) {
    const p = localParts(r.periodStartMs, timeZoneOf(r.customer));
    if (`${p.y}-${String(p.m + 1).padStart(2, '0')}` !== month) continue;
    const key = [r.customer, r.currency, r.meter, r.kind].join('\u0000');
    const s = sums.get(key) ?? sums.set(key, { row: r, quantity: new Decimal(0), amount: new Decimal(0), minor: new Decimal(0), lines: 0 }).get(key)!;
    s.quantity = s.quantity.plus(r.quantity);
    s.amount = s.amount.plus(r.amount);
    s.minor = s.minor.plus(r.amount_minor);
    s.lines += Number(r.lines);
  }
  return [...sums.values()]
    .map(({ row, quantity, amount, minor, lines }) => ({ customer: row.customer, currency: row.currency, meter: row.meter, kind: row.kind, quantity: quantity.toFixed(), amount: amount.toFixed(), amount_minor: minor.toFixed(), lines: String(lines) }))
    .sort((a, b) => cmp(a.customer, b.customer) || cmp(a.kind, b.kind) || cmp(a.meter, b.meter));
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
