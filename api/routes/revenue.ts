import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AppError } from '../../common/errors.ts';
import { checkJournal, itemsThrough, journalCsv, journalEntries, JournalFormats, revenueReport, type InvoiceInZone } from '../../rater/index.ts';
import { JournalCheckSchema, RevenueReportSchema, type JournalCheckBody, type RevenueReportBody } from '../contracts.ts';
import { monthParam, parseWith, sendCsv, wantsCsv } from '../http.ts';
import { responseSchema } from '../response-schema.ts';
import type { BillingRouteDeps } from './billing.ts';

const tags = ['billing'];
const scope = { scope: 'billing' as const };
const monthQuery = { month: { type: 'string', description: 'YYYY-MM: invoices are filed by the month their period starts in, in the customer time zone' } };

const RevenueQuery = z.object({ month: monthParam(), customer: z.string().optional(), currency: z.string().optional(), format: z.enum(['json', 'csv']).optional() });
const JournalQuery = z.object({
  month: monthParam(),
  format: z.enum(JournalFormats).default('generic'),
  currency: z.string().regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code such as USD').optional(),
  xeroTaxRate: z.string().min(1).max(100).optional(),
});
const CheckQuery = z.object({ month: monthParam() });

const REVENUE_CSV_HEADER = ['month', 'customer', 'currency', 'product', 'deferred_opening', 'billed', 'recognized', 'deferred_closing'];

const REVENUE_DESCRIPTION =
  'Revenue recognition (ASC 606 style) of the finalized invoices: advance base fees ratably by day over their service period in the customer time zone, ' +
  'usage, arrears fees, minimum true-ups, adjustments and corrections in the month the invoice is billed (its period start, in the customer zone), ' +
  'discounts and credits reducing the revenue of what they apply to. Exact decimals; each schedule sums to its line, the remainder cent on the last month. ' +
  'Rows per customer, product and currency: deferred at the start, billed, recognized, deferred at the end. docs/revenue.md has the rules.';

const JOURNAL_DESCRIPTION =
  'The month\'s double-entry journal as CSV: one entry per invoice billed in the month (A/R debited with its total; revenue per product credited for what the month recognizes, ' +
  'deferred revenue for the rest; discounts and credits to contra revenue) and one recognition entry per currency (deferred revenue to revenue). ' +
  'format=generic (every field), quickbooks (QuickBooks Online journal entry import) or xero (Xero manual journal import; xeroTaxRate names the zero tax rate, default "Tax Exempt"). ' +
  'QuickBooks and Xero import one currency at a time: give currency= when the month has several. Tax payable and credit notes are added when they exist. docs/revenue.md has the accounts.';

/** Everything the month's figures need: every finalized invoice billed in it or before. */
async function invoicesFor(b: BillingRouteDeps, month: string, customer?: string): Promise<InvoiceInZone[]> {
  const all = await b.billing.invoicesThrough(month);
  return customer === undefined ? all : all.filter((i) => i.invoice.customer === customer);
}

/** Revenue recognition, the journal export and its reconciliation. Scope: billing. */
export function registerRevenueRoutes(app: FastifyInstance, b: BillingRouteDeps): void {
  app.get<{ Querystring: Record<string, string> }>('/api/v1/revenue', {
    config: scope,
    schema: {
      tags,
      summary: 'Recognized and deferred revenue of a month, per customer, product and currency; JSON or CSV',
      description: REVENUE_DESCRIPTION,
      querystring: { type: 'object', required: ['month'], properties: { ...monthQuery, customer: { type: 'string' }, currency: { type: 'string' }, format: { type: 'string', enum: ['json', 'csv'], description: 'or send Accept: text/csv' } } },
      response: { 200: responseSchema(RevenueReportSchema), 400: { $ref: 'Error#' } },
    },
  }, async (req, reply) => {
    const q = parseWith(RevenueQuery, req.query, 'query');
    const items = itemsThrough(await invoicesFor(b, q.month, q.customer), q.month).filter((i) => q.currency === undefined || i.currency === q.currency);
    const report = revenueReport(items, q.month);
    if (wantsCsv(req)) return sendCsv(reply, `revenue-${q.month}.csv`, REVENUE_CSV_HEADER, report.rows.map((r) => [q.month, r.customer, r.currency, r.product, r.deferredOpening, r.billed, r.recognized, r.deferredClosing]));
    return report satisfies RevenueReportBody;
  });

  app.get<{ Querystring: Record<string, string> }>('/api/v1/journal', {
    config: scope,
    schema: {
      tags,
      summary: "The month's journal entries (double entry) as CSV: generic, QuickBooks Online or Xero",
      description: JOURNAL_DESCRIPTION,
      querystring: {
        type: 'object',
        required: ['month'],
        properties: { ...monthQuery, format: { type: 'string', enum: [...JournalFormats], default: 'generic' }, currency: { type: 'string', description: 'one currency only (ISO 4217)' }, xeroTaxRate: { type: 'string' } },
      },
      response: { 200: { type: 'string', description: 'CSV, one row per posting' }, 400: { $ref: 'Error#' } },
    },
  }, async (req, reply) => {
    const q = parseWith(JournalQuery, req.query, 'query');
    const entries = journalEntries(await invoicesFor(b, q.month), q.month).filter((e) => q.currency === undefined || e.currency === q.currency);
    const currencies = [...new Set(entries.map((e) => e.currency))].sort();
    if (q.format !== 'generic' && currencies.length > 1) {
      throw new AppError('REQUEST_INVALID', `invalid query: query.currency: ${q.format} imports one currency at a time and ${q.month} has ${currencies.join(', ')}; give currency=${currencies[0]} (and one file per currency)`);
    }
    const csv = journalCsv(entries, q.format, q.xeroTaxRate ? { xeroTaxRate: q.xeroTaxRate } : {});
    return sendCsv(reply, `journal-${q.month}-${q.format}${q.currency ? `-${q.currency}` : ''}.csv`, csv.header, csv.rows);
  });

  app.get<{ Querystring: Record<string, string> }>('/api/v1/journal/check', {
    config: scope,
    schema: {
      tags,
      summary: "Reconciliation: the month's journal balances and ties out to the finalized invoices, per currency (ok: false names the failing check)",
      description: 'Per currency: debits = credits (and every entry balances); A/R = the totals of the finalized invoices billed in the month; billed = those totals; deferred at month end = at month start + billed - recognized; the journal moves deferred revenue and revenue by exactly the report\'s figures.',
      querystring: { type: 'object', required: ['month'], properties: monthQuery },
      response: { 200: responseSchema(JournalCheckSchema), 400: { $ref: 'Error#' } },
    },
  }, async (req) => {
    const q = parseWith(CheckQuery, req.query, 'query');
    return checkJournal(await invoicesFor(b, q.month), q.month) satisfies JournalCheckBody;
  });
}
