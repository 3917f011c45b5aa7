import { InvalidArgumentError, Option, type Command } from 'commander';

/** Where the running API is and the key to call it with (cli/main.ts `apiTarget`). */
export type ApiTarget = (urlOpt?: string) => { url: string; key: string };

const month = (v: string) => {
  if (!/^\d{4}-(0[1-9]|1[0-2])$/.test(v)) throw new InvalidArgumentError('give a month YYYY-MM, e.g. 2026-11 (month 01-12).');
  return v;
};
/** The journal layouts of GET /api/v1/journal (rater/journal.ts `JournalFormats`; not imported: the CLI loads no server code at start-up). */
const JournalFormats = ['generic', 'quickbooks', 'xero'] as const;
const URL_HELP = 'API base URL (default: the running meterline start, or METERLINE_URL)';

async function call(target: ApiTarget, urlOpt: string | undefined, path: string, qs: Record<string, string | undefined>, accept?: string): Promise<{ ok: boolean; status: number; text: string }> {
  const { url, key } = target(urlOpt);
  const params = new URLSearchParams(Object.entries(qs).filter((e): e is [string, string] => e[1] !== undefined));
  const res = await fetch(`${url}${path}?${params}`, { headers: { authorization: `Bearer ${key}`, ...(accept ? { accept } : {}) } });
  return { ok: res.ok, status: res.status, text: await res.text() };
}

/** The API's error message, or the body itself. */
function failure(r: { status: number; text: string }): Error {
  try {
    return new Error((JSON.parse(r.text) as { message?: string }).message ?? `HTTP ${r.status}`);
  } catch {
    return new Error(`HTTP ${r.status}: ${r.text.slice(0, 200)}`);
  }
}

/** `meterline revenue` and `meterline journal`: revenue recognition and the ledger export (docs/revenue.md), through the running API. */
export function registerRevenueCommands(program: Command, target: ApiTarget): void {
  program
    .command('revenue')
    .description("A month's revenue per customer, product and currency: deferred at the start, billed, recognized, deferred at the end (docs/revenue.md).")
    .requiredOption('--month <YYYY-MM>', 'the month, e.g. 2026-11 (invoices are filed by the month their period starts in, in the customer zone)', month)
    .option('--customer <key>', 'one customer only')
    .option('--currency <code>', 'one currency only')
    .option('--csv', 'print CSV instead of JSON')
    .option('--url <url>', URL_HELP)
    .action(async (opts: { month: string; customer?: string; currency?: string; csv?: boolean; url?: string }) => {
      const r = await call(target, opts.url, '/api/v1/revenue', { month: opts.month, customer: opts.customer, currency: opts.currency }, opts.csv ? 'text/csv' : undefined);
      if (!r.ok) throw failure(r);
      process.stdout.write(opts.csv ? r.text : JSON.stringify(JSON.parse(r.text), null, 2) + '\n');
    });

  program
    .command('journal')
    .description("A month's double-entry journal as CSV (generic, QuickBooks Online or Xero import), or with --check the reconciliation: debits = credits, A/R = invoice totals, deferred roll-forward (exit 1 if any fails).")
    .requiredOption('--month <YYYY-MM>', 'the month, e.g. 2026-11', month)
    .addOption(new Option('--format <format>', 'CSV layout').choices([...JournalFormats]).default('generic'))
    .option('--currency <code>', 'one currency only (QuickBooks and Xero import one currency per file)')
    .option('--xero-tax-rate <name>', 'the TaxRate Xero needs on each line (a zero rate of your organisation, default "Tax Exempt")')
    .option('--check', 'run the reconciliation check instead of exporting')
    .option('--url <url>', URL_HELP)
    .action(async (opts: { month: string; format: string; currency?: string; xeroTaxRate?: string; check?: boolean; url?: string }) => {
      if (opts.check) {
        const r = await call(target, opts.url, '/api/v1/journal/check', { month: opts.month });
        if (!r.ok) throw failure(r);
        const body = JSON.parse(r.text) as { ok: boolean; checks: { name: string; currency: string; expected: string; actual: string; ok: boolean }[] };
        for (const c of body.checks) process.stderr.write(`${c.ok ? 'ok  ' : 'FAIL'}  ${c.currency}  ${c.name}  expected ${c.expected}, got ${c.actual}\n`);
        process.stdout.write(JSON.stringify(body, null, 2) + '\n');
        if (!body.ok) process.exitCode = 1;
        return;
      }
      const r = await call(target, opts.url, '/api/v1/journal', { month: opts.month, format: opts.format, currency: opts.currency, xeroTaxRate: opts.xeroTaxRate });
      if (!r.ok) throw failure(r);
      process.stdout.write(r.text);
    });
}
