import { Decimal } from '../common/decimal.ts';
import { localParts } from './periods.ts';
import { addSums, billedMonth, fromMinor, itemSums, itemsThrough, zeroSums, type InvoiceInZone, type RecognitionItem, type RevenueSums } from './revenue.ts';

/**
 * Double-entry journal of a month, from the recognition items (rater/revenue.ts). Pure.
 *
 * - One entry per invoice billed in the month, dated its period start (local): debit accounts
 *   receivable with the invoice total; credit revenue (per product) with what is recognized this
 *   month and deferred revenue with the rest; discounts and credits debit contra revenue (per
 *   product) and deferred revenue the same way.
 * - One recognition entry per currency, dated the month's last day: what earlier invoices deferred
 *   and this month recognizes moves from deferred revenue to revenue (or contra revenue).
 *
 * Tax payable and credit notes will be entries of their own when they exist (a tax line credits
 * tax payable; a credit note reverses its lines' postings).
 */
export const LedgerAccountKeys = ['receivable', 'deferred', 'revenue', 'contra'] as const;
export type LedgerAccountKey = (typeof LedgerAccountKeys)[number];

/** Default chart of accounts: names (QuickBooks Online matches names) and codes (Xero matches codes). */
export const DEFAULT_ACCOUNTS: Record<LedgerAccountKey, { name: string; code: string }> = {
  receivable: { name: 'Accounts Receivable (A/R)', code: '610' },
  deferred: { name: 'Deferred Revenue', code: '835' },
  revenue: { name: 'Revenue', code: '200' },
  contra: { name: 'Discounts and Credits', code: '210' },
};

/** One posting: `amountMinor` in minor units, positive a debit and negative a credit. */
export interface JournalLine {
  account: LedgerAccountKey;
  /** The product of a revenue or contra posting (a sub-account, or a tracking option). */
  product?: string;
  amountMinor: Decimal;
}

export interface JournalEntry {
  /** The invoice number, or `REV-<month>-<currency>` for the month's recognition entry. */
  id: string;
  /** YYYY-MM-DD, in the month. */
  date: string;
  currency: string;
  customer?: string;
  invoiceId?: string;
  narration: string;
  lines: JournalLine[];
}

const D = (v: string | number) => new Decimal(v);
const two = (n: number) => String(n).padStart(2, '0');

/** The month's last day, YYYY-MM-DD. */
function lastDay(month: string): string {
  const [y, m] = month.split('-').map(Number) as [number, number];
  return `${month}-${two(new Date(Date.UTC(y, m, 0)).getUTCDate())}`;
}

function localDate(ms: number, tz: string): string {
  const p = localParts(ms, tz);
  return `${p.y}-${two(p.m + 1)}-${two(p.d)}`;
}

/** Postings summed per account and product, zero ones dropped, in a fixed order. */
function net(lines: JournalLine[]): JournalLine[] {
  const sums = new Map<string, JournalLine>();
  for (const l of lines) {
    const k = `${LedgerAccountKeys.indexOf(l.account)}\u0000${l.product ?? ''}`;
    const cur = sums.get(k);
    sums.set(k, cur ? { ...cur, amountMinor: cur.amountMinor.plus(l.amountMinor) } : { ...l });
  }
  return [...sums].filter(([, l]) => !l.amountMinor.isZero()).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, l]) => l);
}

/** The postings of an item for `month`: what it recognizes now to its account, what it defers to deferred revenue (both credits for revenue). */
function itemLines(it: RecognitionItem, s: RevenueSums, billedNow: boolean): JournalLine[] {
  if (billedNow) return [
    { account: it.account, product: it.product, amountMinor: s.recognized.neg() },
    { account: 'deferred', amountMinor: s.billed.minus(s.recognized).neg() },
  ];
  return [
    { account: 'deferred', amountMinor: s.recognized },
    { account: it.account, product: it.product, amountMinor: s.recognized.neg() },
  ];
}

/** The journal entries of `month` (YYYY-MM) from every finalized invoice (those billed later are ignored). */
export function journalEntries(invoices: readonly InvoiceInZone[], month: string): JournalEntry[] {
  const items = itemsThrough(invoices, month);
  const byInvoice = new Map<string, RecognitionItem[]>();
  for (const it of items) byInvoice.set(it.invoiceId, [...(byInvoice.get(it.invoiceId) ?? []), it]);
  const entries: JournalEntry[] = [];
  const billedNow = invoices.filter((i) => billedMonth(i) === month).sort((a, b) => (a.invoice.number ?? a.invoice.id).localeCompare(b.invoice.number ?? b.invoice.id));
  for (const { invoice, timeZone } of billedNow) {
    const lines: JournalLine[] = [{ account: 'receivable', amountMinor: D(invoice.totalMinor) }];
    for (const it of byInvoice.get(invoice.id) ?? []) lines.push(...itemLines(it, itemSums(it, month), true));
    entries.push({ id: invoice.number ?? invoice.id, date: localDate(Date.parse(invoice.periodStart), timeZone), currency: invoice.currency, customer: invoice.customer, invoiceId: invoice.id, narration: `Invoice ${invoice.number ?? invoice.id} ${invoice.customer} ${invoice.periodStart.slice(0, 10)}–${invoice.periodEnd.slice(0, 10)}`, lines: net(lines) });
  }
  const recognition = new Map<string, JournalLine[]>();
  for (const it of items) {
    if (it.billedMonth >= month) continue;
    const s = itemSums(it, month);
    if (!s.recognized.isZero()) recognition.set(it.currency, [...(recognition.get(it.currency) ?? []), ...itemLines(it, s, false)]);
  }
  for (const [currency, lines] of [...recognition].sort(([a], [b]) => a.localeCompare(b))) {
    entries.push({ id: `REV-${month}-${currency}`, date: lastDay(month), currency, narration: `Revenue recognized in ${month} from earlier invoices (${currency})`, lines: net(lines) });
  }
  return entries;
}

// ---- the reconciliation check ----

export interface JournalCheck {
  name: 'entries_balance' | 'receivable_equals_invoice_totals' | 'billed_equals_invoice_totals' | 'deferred_roll_forward' | 'journal_deferred_movement' | 'journal_revenue_equals_recognized';
  currency: string;
  /** What the check compares, in the currency's major unit. */
  expected: string;
  actual: string;
  ok: boolean;
  rule: string;
}

const RULES: Record<JournalCheck['name'], string> = {
  entries_balance: 'debits = credits (expected: debits, actual: credits), and every entry balances on its own',
  receivable_equals_invoice_totals: 'accounts receivable debited = sum of the totals of the finalized invoices billed in the month',
  billed_equals_invoice_totals: 'billed in the revenue report = sum of the totals of the finalized invoices billed in the month',
  deferred_roll_forward: 'deferred at month end = deferred at month start + billed - recognized',
  journal_deferred_movement: 'net credit to deferred revenue in the journal = deferred at month end - deferred at month start',
  journal_revenue_equals_recognized: 'net credit to revenue and contra revenue in the journal = recognized in the revenue report',
};

/**
 * Proves the month's journal balances and ties out to the invoices, per currency: see RULES. The
 * invoice totals are read from the invoices themselves, not from the recognition items.
 */
export function checkJournal(invoices: readonly InvoiceInZone[], month: string): { month: string; ok: boolean; checks: JournalCheck[] } {
  const entries = journalEntries(invoices, month);
  const items = itemsThrough(invoices, month);
  const currencies = new Set<string>();
  const invoiceTotals = new Map<string, Decimal>();
  for (const i of invoices) {
    if (billedMonth(i) !== month) continue;
    currencies.add(i.invoice.currency);
    invoiceTotals.set(i.invoice.currency, (invoiceTotals.get(i.invoice.currency) ?? D(0)).plus(i.invoice.totalMinor));
  }
  const report = new Map<string, RevenueSums>();
  for (const it of items) {
    currencies.add(it.currency);
    addSums(report.get(it.currency) ?? report.set(it.currency, zeroSums()).get(it.currency)!, itemSums(it, month));
  }
  const checks: JournalCheck[] = [];
  for (const currency of [...currencies].sort()) {
    const mine = entries.filter((e) => e.currency === currency);
    const posted = (pred: (l: JournalLine) => boolean) => mine.flatMap((e) => e.lines).filter(pred).reduce((a, l) => a.plus(l.amountMinor), D(0));
    const debits = posted((l) => l.amountMinor.gt(0));
    const credits = posted((l) => l.amountMinor.lt(0)).neg();
    const unbalanced = mine.filter((e) => !e.lines.reduce((a, l) => a.plus(l.amountMinor), D(0)).isZero()).length;
    const r = report.get(currency) ?? zeroSums();
    const totals = invoiceTotals.get(currency) ?? D(0);
    const add = (name: JournalCheck['name'], expected: Decimal, actual: Decimal, extraOk = true) =>
      checks.push({ name, currency, expected: fromMinor(expected, currency), actual: fromMinor(actual, currency), ok: expected.eq(actual) && extraOk, rule: RULES[name] });
    add('entries_balance', debits, credits, unbalanced === 0);
    add('receivable_equals_invoice_totals', totals, posted((l) => l.account === 'receivable'));
    add('billed_equals_invoice_totals', totals, r.billed);
    add('deferred_roll_forward', r.deferredOpening.plus(r.billed).minus(r.recognized), r.deferredClosing);
    add('journal_deferred_movement', r.deferredClosing.minus(r.deferredOpening), posted((l) => l.account === 'deferred').neg());
    add('journal_revenue_equals_recognized', r.recognized, posted((l) => l.account === 'revenue' || l.account === 'contra').neg());
  }
  return { month, ok: checks.every((c) => c.ok), checks };
}

// ---- CSV layouts ----

export const JournalFormats = ['generic', 'quickbooks', 'xero'] as const;
export type JournalFormat = (typeof JournalFormats)[number];

export interface JournalCsv {
  header: string[];
  rows: string[][];
}

export interface JournalCsvOptions {
  accounts?: Record<LedgerAccountKey, { name: string; code: string }>;
  /** Xero's TaxRate column (mandatory there): the name of a zero rate in the organisation's tax settings. */
  xeroTaxRate?: string;
}

/** A posting's account name: a product's revenue or contra revenue is a sub-account, `Parent:Product` (QuickBooks Online's notation). */
function accountName(l: JournalLine, accounts: JournalCsvOptions['accounts'] & object): string {
  const base = accounts[l.account].name;
  return l.product && (l.account === 'revenue' || l.account === 'contra') ? `${base}:${l.product}` : base;
}

const dmy = (date: string) => `${date.slice(8, 10)}/${date.slice(5, 7)}/${date.slice(0, 4)}`;
const mdy = (date: string) => `${date.slice(5, 7)}/${date.slice(8, 10)}/${date.slice(0, 4)}`;

/**
 * The entries as CSV rows in one of three layouts (docs/revenue.md names the sources):
 * - `generic`: one row per posting with every field, debit and credit columns, ISO dates;
 * - `quickbooks`: QuickBooks Online's journal entry import (Journal No, Journal Date MM/DD/YYYY,
 *   Account Name, Debits, Credits, Description, Name: the customer, which A/R lines need);
 * - `xero`: Xero's manual journal import (Narration, Date DD/MM/YYYY, Description, AccountCode,
 *   TaxRate, Amount positive for a debit and negative for a credit, tracking category Product).
 */
export function journalCsv(entries: readonly JournalEntry[], format: JournalFormat, opts: JournalCsvOptions = {}): JournalCsv {
  const accounts = opts.accounts ?? DEFAULT_ACCOUNTS;
  const amount = (m: Decimal, currency: string) => fromMinor(m.abs(), currency);
  const rows = entries.flatMap((e) => e.lines.map((l) => ({ e, l, debit: l.amountMinor.gt(0) ? amount(l.amountMinor, e.currency) : '', credit: l.amountMinor.lt(0) ? amount(l.amountMinor, e.currency) : '' })));
  switch (format) {
    case 'generic':
      return {
        header: ['entry', 'date', 'currency', 'account', 'account_code', 'product', 'customer', 'invoice_id', 'debit', 'credit', 'narration'],
        rows: rows.map(({ e, l, debit, credit }) => [e.id, e.date, e.currency, accountName(l, accounts), accounts[l.account].code, l.product ?? '', e.customer ?? '', e.invoiceId ?? '', debit, credit, e.narration]),
      };
    case 'quickbooks':
      return {
        header: ['Journal No', 'Journal Date', 'Account Name', 'Debits', 'Credits', 'Description', 'Name'],
        rows: rows.map(({ e, l, debit, credit }) => [e.id, mdy(e.date), accountName(l, accounts), debit, credit, e.narration, e.customer ?? '']),
      };
    case 'xero':
      return {
        header: ['Narration', 'Date', 'Description', 'AccountCode', 'TaxRate', 'Amount', 'TrackingName1', 'TrackingOption1'],
        rows: rows.map(({ e, l }) => [`${e.id}: ${e.narration}`, dmy(e.date), accountName(l, accounts), accounts[l.account].code, opts.xeroTaxRate ?? 'Tax Exempt', fromMinor(l.amountMinor, e.currency), l.product ? 'Product' : '', l.product ?? '']),
      };
  }
}

