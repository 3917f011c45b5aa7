import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Meter } from '../../meter/index.ts';
import { fromLocal, listPrice, sortUnbilledRows, unbilledCurrencyTotals, unbilledRanges, unbilledTotals, type Period, type UnbilledCatalog, type UnbilledReason, type UnbilledRow } from '../../rater/index.ts';
import type { UsageStore } from '../../usage/index.ts';
import type { AppDeps } from '../app.ts';
import { UnbilledSchema, type Unbilled } from '../contracts.ts';
import { monthParam, parseWith, sendCsv, timeZoneParam, wantsCsv } from '../http.ts';
import { responseSchema } from '../response-schema.ts';
import type { BillingRouteDeps } from './billing.ts';

const iso = (ms: number) => new Date(ms).toISOString();

/** Month `YYYY-MM` in `timeZone`, as instants [first midnight, next first midnight). */
export function monthIn(month: string, timeZone: string): Period {
  const [y, m] = month.split('-').map(Number) as [number, number];
  const at = (year: number, m0: number) => fromLocal({ y: year, m: m0, d: 1, hh: 0, mm: 0, ss: 0 }, timeZone);
  return { start: at(y, m - 1), end: m === 12 ? at(y + 1, 0) : at(y, m) };
}

export interface UnbilledDeps {
  usage: Pick<UsageStore, 'valuesOverRanges'>;
  meters: Meter[];
  catalog: UnbilledCatalog;
}

interface Pending {
  subject: string;
  reason: UnbilledReason;
}

/**
 * The month's unbilled usage. Reads: one per meter for every subject's value over the whole
 * month, then one per meter and distinct set of part-month ranges (subscriptions that start, end
 * or change plan within the month) for the subjects whose month is split. A subject whose whole
 * month has one reason takes the month's value, so no value is ever added across a gap.
 */
export async function unbilledUsage(d: UnbilledDeps, month: Period): Promise<UnbilledRow[]> {
  const rows: UnbilledRow[] = [];
  for (const meter of [...d.meters].sort((a, b) => a.slug.localeCompare(b.slug))) {
    const whole = await d.usage.valuesOverRanges(meter, { ranges: [month] });
    const split = new Map<string, Pending[]>(); // JSON of the ranges -> who needs them
    for (const [subject, value] of whole) {
      for (const { reason, ranges } of unbilledRanges(subject, meter.slug, month, d.catalog)) {
        if (ranges.length === 1 && ranges[0]!.start === month.start && ranges[0]!.end === month.end) rows.push(row(d, meter, subject, reason, ranges, value, month));
        else split.set(JSON.stringify(ranges), [...(split.get(JSON.stringify(ranges)) ?? []), { subject, reason }]);
      }
    }
    for (const [key, who] of split) {
      const ranges = JSON.parse(key) as Period[];
      const values = await d.usage.valuesOverRanges(meter, { ranges, subjects: [...new Set(who.map((w) => w.subject))] });
      for (const { subject, reason } of who) {
        const value = values.get(subject);
        if (value !== undefined) rows.push(row(d, meter, subject, reason, ranges, value, month));
      }
    }
  }
  return sortUnbilledRows(rows);
}

function row(d: UnbilledDeps, meter: Meter, subject: string, reason: UnbilledReason, ranges: Period[], quantity: string, month: Period): UnbilledRow {
  return {
    reason,
    subject,
    customer: d.catalog.customers.has(subject) ? subject : null,
    meter: meter.slug,
    aggregation: meter.aggregation,
    quantity,
    ranges: ranges.map((r) => ({ start: iso(r.start), end: iso(r.end) })),
    ...listPrice(subject, meter.slug, quantity, month, d.catalog),
  };
}

const CSV_HEADER = ['reason', 'subject', 'customer', 'meter', 'aggregation', 'quantity', 'amount', 'currency', 'plan', 'charge', 'price_source', 'ranges', 'note'];

const DESCRIPTION =
  'Usage that no invoice bills, per subject and meter, with one reason each (the first that applies): meter_not_priced (no plan charges the meter), ' +
  'unknown_subject (the subject is no customer), no_subscription (no subscription phase covers that time: before the start, after the end or cancel, in a gap), ' +
  'meter_not_in_plan (the plan in force does not charge the meter). Quantities are exact decimal strings over the parts of the month with that reason ' +
  "(for UNIQUE_COUNT, MIN, MAX, LATEST and AVG the meter's value over those parts together, as billing would count a period). " +
  "amount is at list price, rounded to the currency: the customer's own plan's price (latest phase starting before the month's end, with its override) " +
  "if it charges the meter, else the lowest amount among the catalog's plans charging it (in the customer's currency when possible): a conservative figure; null when nothing prices it. " +
  'The month is a calendar month in UTC unless timeZone is given. docs/unbilled.md has the details.';

/** GET /api/v1/billing/unbilled: revenue leakage for finance. Scope: billing. */
export function registerUnbilledRoutes(app: FastifyInstance, deps: AppDeps & { usage: UsageStore }, b: BillingRouteDeps): void {
  app.get<{ Querystring: Record<string, string> }>('/api/v1/billing/unbilled', {
    config: { scope: 'billing' },
    schema: {
      tags: ['billing'],
      summary: 'Unbilled usage in a month (revenue leakage): per reason, subject and meter, at list price, with totals per reason and currency; JSON or CSV',
      description: DESCRIPTION,
      querystring: {
        type: 'object',
        required: ['month'],
        properties: {
          month: { type: 'string', description: 'YYYY-MM' },
          timeZone: { type: 'string', description: 'IANA zone the month is cut in (default UTC)' },
          format: { type: 'string', enum: ['json', 'csv'], description: 'or send Accept: text/csv' },
        },
      },
      response: { 200: responseSchema(UnbilledSchema), 400: { $ref: 'Error#' } },
    },
  }, async (req, reply) => {
    const q = parseWith(z.object({ month: monthParam(), timeZone: timeZoneParam().default('UTC'), format: z.enum(['json', 'csv']).optional() }), req.query, 'query');
    const month = monthIn(q.month, q.timeZone);
    const catalog: UnbilledCatalog = { customers: new Map(b.customers.list().map((c) => [c.key, c])), plans: b.plans.list(), subscriptions: b.subscriptions.list() };
    const rows = await unbilledUsage({ usage: deps.usage, meters: deps.meters.list(), catalog }, month);
    if (wantsCsv(req)) {
      return sendCsv(reply, `unbilled-${q.month}.csv`, CSV_HEADER, rows.map((r) => [r.reason, r.subject, r.customer, r.meter, r.aggregation, r.quantity, r.amount, r.currency, r.plan, r.charge, r.priceSource, r.ranges.map((x) => `${x.start}/${x.end}`).join(' '), r.note]));
    }
    return { month: q.month, timeZone: q.timeZone, from: iso(month.start), to: iso(month.end), rows, totals: unbilledTotals(rows), currencyTotals: unbilledCurrencyTotals(rows) } satisfies Unbilled;
  });
}
