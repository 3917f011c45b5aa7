import { InvalidArgumentError, type Command } from 'commander';

/** What the summary reads of GET /api/v1/billing/unbilled (api/contracts.ts `Unbilled`). */
interface Unbilled {
  month: string;
  timeZone: string;
  rows: unknown[];
  totals: { reason: string; currency: string | null; amount: string | null; rows: number }[];
}

/** Where the running API is and the key to call it with (cli/main.ts `apiTarget`). */
export type ApiTarget = (urlOpt?: string) => { url: string; key: string };

function month(v: string): string {
  if (!/^\d{4}-(0[1-9]|1[0-2])$/.test(v)) throw new InvalidArgumentError('give a month YYYY-MM, e.g. 2026-11 (month 01-12).');
  return v;
}

/** One line per reason and currency: what the JSON's `totals` say, for a person reading the terminal. */
function summary(body: Unbilled): string {
  if (body.rows.length === 0) return `no unbilled usage in ${body.month} (${body.timeZone})\n`;
  const lines = body.totals.map((t) => `${t.reason.padEnd(18)} ${String(t.rows).padStart(5)} rows  ${t.amount === null ? 'no price' : `${t.amount} ${t.currency}`}`);
  return `unbilled usage in ${body.month} (${body.timeZone}), at list price:\n${lines.join('\n')}\n`;
}

/**
 * `meterline unbilled --month YYYY-MM [--csv]`: usage no invoice bills (GET
 * /api/v1/billing/unbilled) through the running API, as JSON (totals on stderr) or CSV.
 */
export function registerUnbilledCommand(program: Command, apiTarget: ApiTarget): void {
  program
    .command('unbilled')
    .description('Usage no invoice bills in a month (meters no plan charges, unknown subjects, no subscription, meters the customer\'s plan does not charge), at list price, through the running API (billing scope). docs/unbilled.md explains the rules.')
    .requiredOption('--month <YYYY-MM>', 'the calendar month, e.g. 2026-11 (UTC unless --time-zone)', month)
    .option('--time-zone <zone>', 'IANA zone the month is cut in, e.g. Europe/Berlin (default UTC)')
    .option('--csv', 'print CSV (one row per reason, subject and meter) instead of JSON')
    .option('--url <url>', 'API base URL (default: the running meterline start, or METERLINE_URL)')
    .action(async (opts: { month: string; timeZone?: string; csv?: boolean; url?: string }) => {
      const { url, key } = apiTarget(opts.url);
      const qs = new URLSearchParams({ month: opts.month, ...(opts.timeZone ? { timeZone: opts.timeZone } : {}) });
      const res = await fetch(`${url}/api/v1/billing/unbilled?${qs}`, { headers: { authorization: `Bearer ${key}`, accept: opts.csv ? 'text/csv' : 'application/json' } });
      const text = await res.text();
      if (!res.ok) throw new Error((JSON.parse(text) as { message?: string }).message ?? `unbilled failed with HTTP ${res.status}`);
      if (opts.csv) {
        process.stdout.write(text);
        return;
      }
      const body = JSON.parse(text) as Unbilled;
      process.stderr.write(summary(body));
      process.stdout.write(JSON.stringify(body, null, 2) + '\n');
    });
}
