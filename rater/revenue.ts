import { Decimal } from '../common/decimal.ts';
import { lineSource, type Invoice, type InvoiceLine } from './invoice-types.ts';
import { fromLocal, localParts } from './periods.ts';
import { minorUnits } from './pricing/index.ts';

/**
 * Revenue recognition (ASC 606 style) of finalized invoices. Pure: invoices and each customer's
 * time zone in, schedules and the month's report out. docs/revenue.md states every rule; in short:
 *
 * - An invoice is *billed* in the month its period starts in the customer's zone (the month the
 *   finance aggregates file it in, rater/aggregates.ts).
 * - Advance base fees and plan-change prorations are recognized ratably by local calendar day over
 *   their line's period (a 23- or 25-hour DST day is one day).
 * - Arrears base fees, usage, minimum true-ups, line discounts, one-time adjustments and
 *   corrections of earlier periods are recognized in the month the invoice is billed.
 * - Invoice discounts and prepaid-credit draws are split over the lines they reduce, pro rata to
 *   those lines' amounts, and each part follows its line's schedule (contra revenue).
 * - Nothing is recognized before it is billed: a schedule month earlier than the billing month is
 *   recognized in the billing month.
 *
 * Amounts are integers of the currency's minor unit; every schedule sums exactly to its line, the
 * remainder cent on the last month. Tax lines and credit notes do not exist yet: they will add
 * their own items (tax payable is never revenue; a credit note reverses the items of its lines).
 */

/** Where an item's recognized amount is posted: revenue, or contra revenue (discounts and credits). */
export const RevenueAccounts = ['revenue', 'contra'] as const;
export type RevenueAccount = (typeof RevenueAccounts)[number];

/** One month's part of an item: `amountMinor` (signed integer string of minor units) recognized in `month` (YYYY-MM). */
export interface ScheduleEntry {
  month: string;
  amountMinor: string;
}

/** The recognition of one invoice line, or of one part of an invoice discount or credit. */
export interface RecognitionItem {
  invoiceId: string;
  invoiceNumber?: string;
  lineId: string;
  /** For a share of an invoice discount or credit: the line it reduces. */
  appliesTo?: string;
  customer: string;
  currency: string;
  /** `base_fee`, `usage.<charge>`, `minimum_commitment` or `one_time`. */
  product: string;
  meter?: string;
  account: RevenueAccount;
  rule: 'ratable' | 'point';
  /** The month the invoice is billed in (its period start, in the customer's zone). */
  billedMonth: string;
  amountMinor: string;
  schedule: ScheduleEntry[];
}

export interface InvoiceInZone {
  invoice: Invoice;
  /** The customer's IANA time zone: months and days are cut in it. */
  timeZone: string;
}

const D = (v: string | number) => new Decimal(v);

/** The month (YYYY-MM) instant `ms` falls in, in `timeZone`. */
export function localMonth(ms: number, timeZone: string): string {
  const p = localParts(ms, timeZone);
  return `${p.y}-${String(p.m + 1).padStart(2, '0')}`;
}

/** The month an invoice is billed in: its period start's month in the customer's zone. */
export function billedMonth(inv: InvoiceInZone): string {
  return localMonth(Date.parse(inv.invoice.periodStart), inv.timeZone);
}

function midnight(y: number, m: number, d: number, tz: string): number {
  return fromLocal({ y, m, d, hh: 0, mm: 0, ss: 0 }, tz);
}

/**
 * Instant `ms` as a count of local calendar days since 1970-01-01 in `tz`: the whole days plus the
 * elapsed share of the current day, measured against that day's own length (23, 24 or 25 hours).
 * Differences of it are the days between two instants, each local day counting 1.
 */
export function dayPosition(ms: number, tz: string): Decimal {
  const p = localParts(ms, tz);
  const start = midnight(p.y, p.m, p.d, tz);
  const end = midnight(p.y, p.m, p.d + 1, tz);
  const wholeDays = Date.UTC(p.y, p.m, p.d) / 86_400_000;
  return D(wholeDays).plus(D(ms - start).div(end - start));
}

/** The local months [start, end) overlaps, each with the local days of the overlap. */
export function daysPerMonth(start: number, end: number, tz: string): { month: string; days: Decimal }[] {
  const out: { month: string; days: Decimal }[] = [];
  let p = localParts(start, tz);
  let from = start;
  while (from < end) {
    const next = Math.min(end, midnight(p.y, p.m + 1, 1, tz));
    out.push({ month: `${p.y}-${String(p.m + 1).padStart(2, '0')}`, days: dayPosition(next, tz).minus(dayPosition(from, tz)) });
    from = next;
    p = localParts(next, tz);
  }
  return out;
}

/**
 * `amountMinor` spread over `weights` (in order), exact to the minor unit: the amount recognized
 * to the end of each month is the exact share rounded toward zero, so no month is more than one
 * unit off its exact share and the remainder lands on the last month.
 */
export function spread(amountMinor: Decimal, weights: { month: string; days: Decimal }[]): ScheduleEntry[] {
  const total = weights.reduce((a, w) => a.plus(w.days), D(0));
  if (weights.length === 0 || total.lte(0)) throw new Error('spread: no days to spread over');
  let cum = D(0);
  let before = D(0);
  return weights.map((w, i) => {
    cum = cum.plus(w.days);
    const to = i === weights.length - 1 ? amountMinor : amountMinor.mul(cum).div(total).toDecimalPlaces(0, Decimal.ROUND_DOWN);
    const entry = { month: w.month, amountMinor: to.minus(before).toFixed() };
    before = to;
    return entry;
  });
}

/** A schedule with every month before `billed` moved into `billed` (nothing is recognized before it is billed); zero months dropped. */
function notBefore(schedule: ScheduleEntry[], billed: string): ScheduleEntry[] {
  const out = new Map<string, Decimal>();
  for (const e of schedule) {
    const m = e.month < billed ? billed : e.month;
    out.set(m, (out.get(m) ?? D(0)).plus(e.amountMinor));
  }
  return [...out].filter(([, a]) => !a.isZero()).map(([month, a]) => ({ month, amountMinor: a.toFixed() }));
}

/** How a line is recognized: ratably over its period, at billing, or split over the lines it reduces. */
type Treatment = { rule: 'ratable' | 'point'; product: string; account: RevenueAccount } | { rule: 'allocate' };

const usageProduct = (charge: string) => (charge === '(minimum)' ? 'minimum_commitment' : `usage.${charge.replace(/#\d+$/, '')}`);

/** The recognition rule of a line (docs/revenue.md, "Rules"). */
export function treatmentOf(line: InvoiceLine): Treatment {
  const src = lineSource(line);
  switch (src.kind) {
    case 'base_fee':
      return { rule: src.timing === 'arrears' ? 'point' : 'ratable', product: 'base_fee', account: 'revenue' };
    case 'proration':
      return { rule: 'ratable', product: 'base_fee', account: 'revenue' };
    case 'usage':
      return { rule: 'point', product: usageProduct(src.charge), account: 'revenue' };
    case 'minimum_true_up':
      return { rule: 'point', product: 'minimum_commitment', account: 'revenue' };
    case 'correction':
      return { rule: 'point', product: usageProduct(src.charge), account: 'revenue' };
    case 'adjustment':
      return { rule: 'point', product: 'one_time', account: D(line.amount).lt(0) ? 'contra' : 'revenue' };
    case 'discount':
      return 'charge' in src ? { rule: 'point', product: usageProduct(src.charge), account: 'contra' } : { rule: 'allocate' };
    case 'credit':
      return { rule: 'allocate' };
  }
}

function scheduleOf(rule: 'ratable' | 'point', amountMinor: Decimal, line: InvoiceLine, billed: string, tz: string): ScheduleEntry[] {
  if (amountMinor.isZero()) return [];
  const start = Date.parse(line.periodStart);
  const end = Date.parse(line.periodEnd);
  if (rule === 'point' || end <= start) return [{ month: billed, amountMinor: amountMinor.toFixed() }];
  return notBefore(spread(amountMinor, daysPerMonth(start, end, tz)), billed);
}

const minorOf = (line: InvoiceLine) => D(line.amountMinor);

/**
 * The recognition items of one finalized invoice: one per line, and for an invoice discount or a
 * credit one per line it reduces (the lines before it with a rule of their own), pro rata to their
 * amounts, exact to the minor unit (the remainder on the last). The items' amounts sum to the
 * invoice total.
 */
export function recognitionItems(inv: InvoiceInZone): RecognitionItem[] {
  const { invoice, timeZone } = inv;
  const billed = billedMonth(inv);
  const head = { invoiceId: invoice.id, ...(invoice.number ? { invoiceNumber: invoice.number } : {}), customer: invoice.customer, currency: invoice.currency, billedMonth: billed };
  const items: RecognitionItem[] = [];
  const own: { line: InvoiceLine; rule: 'ratable' | 'point'; product: string }[] = [];
  for (const line of invoice.lines) {
    const t = treatmentOf(line);
    if (t.rule !== 'allocate') {
      own.push({ line, rule: t.rule, product: t.product });
      items.push(item(head, line, t.product, t.account, t.rule, minorOf(line), line, billed, timeZone));
      continue;
    }
    for (const share of allocate(minorOf(line), own)) {
      items.push({ ...item(head, line, share.target.product, 'contra', share.target.rule, share.amountMinor, share.target.line, billed, timeZone), appliesTo: share.target.line.id });
    }
  }
  return items;
}

function item(head: Pick<RecognitionItem, 'invoiceId' | 'invoiceNumber' | 'customer' | 'currency' | 'billedMonth'>, line: InvoiceLine, product: string, account: RevenueAccount, rule: 'ratable' | 'point', amountMinor: Decimal, periodOf: InvoiceLine, billed: string, tz: string): RecognitionItem {
  return { ...head, lineId: line.id, product, ...(periodOf.meter ? { meter: periodOf.meter } : {}), account, rule, amountMinor: amountMinor.toFixed(), schedule: scheduleOf(rule, amountMinor, periodOf, billed, tz) };
}

/**
 * `amountMinor` (a discount or credit, negative) split over `targets` pro rata to their amounts:
 * each share rounded toward zero, the remainder on the last target. When the targets sum to zero
 * or less (nothing to reduce) the whole amount stays on the last target, or is a point item.
 */
function allocate(amountMinor: Decimal, targets: { line: InvoiceLine; rule: 'ratable' | 'point'; product: string }[]): { target: (typeof targets)[number]; amountMinor: Decimal }[] {
  const withAmount = targets.filter((t) => !minorOf(t.line).isZero());
  const base = withAmount.reduce((a, t) => a.plus(minorOf(t.line)), D(0));
  if (withAmount.length === 0 || base.lte(0)) {
    const last = targets.at(-1);
    if (!last) throw new Error('a discount or credit line with no line before it to reduce');
    return [{ target: last, amountMinor }];
  }
  let given = D(0);
  return withAmount.map((t, i) => {
    const share = i === withAmount.length - 1 ? amountMinor.minus(given) : amountMinor.mul(minorOf(t.line)).div(base).toDecimalPlaces(0, Decimal.ROUND_DOWN);
    given = given.plus(share);
    return { target: t, amountMinor: share };
  });
}

/** One customer's revenue of one product in one currency, for a month (amounts in the currency's major unit). */
export interface RevenueRow {
  customer: string;
  currency: string;
  product: string;
  /** Deferred revenue at the start of the month (billed earlier, recognized later). */
  deferredOpening: string;
  /** Billed this month: the invoices filed in the month (net of their discounts and credits). */
  billed: string;
  /** Recognized this month, net of discounts and credits. */
  recognized: string;
  /** Deferred revenue at the end of the month: deferredOpening + billed - recognized. */
  deferredClosing: string;
}

export type RevenueTotals = Omit<RevenueRow, 'customer' | 'product'>;

export interface RevenueReport {
  month: string;
  rows: RevenueRow[];
  /** Per currency: the rows summed. */
  totals: RevenueTotals[];
}

/** Minor-unit sums of one row, before formatting. */
export interface RevenueSums {
  deferredOpening: Decimal;
  billed: Decimal;
  recognized: Decimal;
  deferredClosing: Decimal;
}

/** The month's figures of one item (minor units): billed, recognized, deferred before and after. */
export function itemSums(it: RecognitionItem, month: string): RevenueSums {
  const zero = { deferredOpening: D(0), billed: D(0), recognized: D(0), deferredClosing: D(0) };
  if (it.billedMonth > month) return zero;
  const sum = (pred: (m: string) => boolean) => it.schedule.filter((e) => pred(e.month)).reduce((a, e) => a.plus(e.amountMinor), D(0));
  return {
    deferredOpening: it.billedMonth < month ? sum((m) => m >= month) : D(0),
    billed: it.billedMonth === month ? D(it.amountMinor) : D(0),
    recognized: sum((m) => m === month),
    deferredClosing: sum((m) => m > month),
  };
}

/** Major-unit decimal string of an integer of minor units. */
export function fromMinor(minor: Decimal, currency: string): string {
  const digits = minorUnits(currency);
  return minor.div(D(10).pow(digits)).toFixed(digits);
}

/** The revenue report of `month` (YYYY-MM) from the items of every invoice billed up to then, per customer, product and currency. */
export function revenueReport(items: readonly RecognitionItem[], month: string): RevenueReport {
  const rows = new Map<string, { key: Pick<RevenueRow, 'customer' | 'currency' | 'product'>; sums: RevenueSums }>();
  const totals = new Map<string, RevenueSums>();
  for (const it of items) {
    const s = itemSums(it, month);
    if (it.billedMonth > month || (s.deferredOpening.isZero() && s.billed.isZero() && s.recognized.isZero() && s.deferredClosing.isZero())) continue;
    const k = [it.customer, it.currency, it.product].join('\u0000');
    const row = rows.get(k) ?? rows.set(k, { key: { customer: it.customer, currency: it.currency, product: it.product }, sums: zeroSums() }).get(k)!;
    addSums(row.sums, s);
    addSums(totals.get(it.currency) ?? totals.set(it.currency, zeroSums()).get(it.currency)!, s);
  }
  const fmt = (s: RevenueSums, currency: string) => ({ deferredOpening: fromMinor(s.deferredOpening, currency), billed: fromMinor(s.billed, currency), recognized: fromMinor(s.recognized, currency), deferredClosing: fromMinor(s.deferredClosing, currency) });
  return {
    month,
    rows: [...rows.values()].map(({ key, sums }) => ({ ...key, ...fmt(sums, key.currency) })).sort((a, b) => cmp(a.customer, b.customer) || cmp(a.currency, b.currency) || cmp(a.product, b.product)),
    totals: [...totals].map(([currency, s]) => ({ currency, ...fmt(s, currency) })).sort((a, b) => cmp(a.currency, b.currency)),
  };
}

export function zeroSums(): RevenueSums {
  return { deferredOpening: D(0), billed: D(0), recognized: D(0), deferredClosing: D(0) };
}

export function addSums(into: RevenueSums, s: RevenueSums): void {
  into.deferredOpening = into.deferredOpening.plus(s.deferredOpening);
  into.billed = into.billed.plus(s.billed);
  into.recognized = into.recognized.plus(s.recognized);
  into.deferredClosing = into.deferredClosing.plus(s.deferredClosing);
}

/** The items of every invoice billed in `month` or before (invoices of later months are left out). */
export function itemsThrough(invoices: readonly InvoiceInZone[], month: string): RecognitionItem[] {
  return invoices.filter((i) => billedMonth(i) <= month).flatMap(recognitionItems);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
