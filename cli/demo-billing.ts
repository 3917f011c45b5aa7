import { Decimal } from '../common/decimal.ts';
import { CLOSE_SAFETY_MS, boundary, localParts, periodAt, type Period } from '../rater/index.ts';

/**
 * The billing part of `meterline start --demo`: customers, two plans and three subscriptions
 * whose monthly billing period ends about a minute after the demo starts (anchored a month
 * back, in each customer's zone; initech upgrades mid-period). It sends usage inside that
 * period, waits until the period's cutoff (its end plus the grace; `start --demo` runs with a
 * short grace) has passed, closes it for real and shows the finalized invoices with their usage.
 * Then it sends a late event for the closed period (ingested after its cutoff), which is billed
 * as a correction on the next, projected invoice: the late-event rule at work.
 *
 * Every run makes new subscriptions (ids carry the period end), so a second run on the same
 * state folder bills a new period that ends during it; earlier runs' subscriptions stay as they were.
 */
interface InvoiceSummary {
  id: string;
  number?: string;
  customer: string;
  currency: string;
  total: string;
  status: string;
  periodStart: string;
  periodEnd: string;
  lines: { kind: string; description: string; meter?: string; periodStart: string; periodEnd: string; quantity: string; amount: string }[];
}

const CUSTOMERS = [
  { key: 'acme', name: 'Acme Corp', currency: 'USD', timeZone: 'America/New_York' },
  { key: 'globex', name: 'Globex', currency: 'USD', timeZone: 'Europe/Berlin' },
  { key: 'initech', name: 'Initech', currency: 'USD', timeZone: 'UTC' },
];

const PLANS = [
  {
    key: 'starter',
    name: 'Starter',
    currency: 'USD',
    interval: 'month',
    baseFee: { amount: '29.00', timing: 'arrears' },
    charges: [
      { key: 'calls', meter: 'api-calls', description: 'API calls', price: { model: 'graduated', tiers: [{ upTo: '50', unitPrice: '0' }, { upTo: null, unitPrice: '0.05' }] } },
      { key: 'tokens', meter: 'llm-tokens', description: 'LLM tokens', price: { model: 'package', packageSize: '1000', packagePrice: '0.02' } },
    ],
  },
  {
    key: 'scale',
    name: 'Scale',
    currency: 'USD',
    interval: 'month',
    baseFee: { amount: '199.00', timing: 'advance' },
    minimumCommitment: '50.00',
    charges: [
      { key: 'calls', meter: 'api-calls', description: 'API calls', price: { model: 'volume', tiers: [{ upTo: '100', unitPrice: '0.04' }, { upTo: null, unitPrice: '0.03' }] } },
      { key: 'tokens', meter: 'llm-tokens', description: 'LLM tokens', price: { model: 'per_unit', unitPrice: '0.000015' } },
    ],
  },
];

/** How long after the billing demo starts its period ends. */
const PERIOD_ENDS_IN_MS = 60_000;
/** The late event: LLM tokens for acme (on starter, no minimum to absorb them), timed inside the closed period, sent after its cutoff. */
export const LATE_TOKENS = 20_000;

/** The usage the billing demo sends inside the period, spread over [fromMs, toMs): per customer 60 API calls and 60 LLM completions. */
export function billingDemoEvents(stamp: string, fromMs: number, toMs: number) {
  const events = [];
  for (let i = 0; i < 360; i++) {
    const subject = CUSTOMERS[i % 3]!.key;
    const time = new Date(fromMs + Math.floor((i / 360) * (toMs - fromMs))).toISOString();
    events.push(
      i % 2 === 0
        ? { specversion: '1.0', id: `demo-${stamp}-${i}`, source: 'demo-gateway', type: 'api.request', subject, time, data: { endpoint: '/search', user: `user-${i % 7}` } }
        : { specversion: '1.0', id: `demo-${stamp}-${i}`, source: 'demo-llm', type: 'llm.completion', subject, time, data: { model: 'large', tokens: 2500 + (i % 13) * 100 } },
    );
  }
  return events;
}

/** A past anchor whose monthly period (in `tz`) containing `nowMs` ends exactly at `endMs`; months of other lengths clamp the day, so each candidate is checked. */
export function anchorEndingAt(endMs: number, nowMs: number, tz: string): number {
  for (let k = 1; k <= 12; k++) {
    const anchor = boundary(endMs, 'month', -k, tz);
    if (anchor < nowMs && periodAt(anchor, 'month', nowMs, tz).end === endMs) return anchor;
  }
  throw new Error(`no monthly anchor in ${tz} gives a period ending at ${new Date(endMs).toISOString()}`);
}

/** The month (YYYY-MM) of instant `ms` in `tz`: `close --period` takes the month a period starts in, in the customer's zone. */
const monthOf = (ms: number, tz: string) => {
  const lp = localParts(ms, tz);
  return `${lp.y}-${String(lp.m + 1).padStart(2, '0')}`;
};
const hms = (ms: number) => new Date(ms).toISOString().slice(11, 19);
const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

export async function runBillingDemo(baseUrl: string, apiKey: string, say: (s: string) => void, opts: { graceMs: number }): Promise<InvoiceSummary[]> {
  const headers = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
  const post = async (path: string, body: unknown, ok = [200, 201, 202, 409]) => {
    const r = await fetch(`${baseUrl}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
    const text = await r.text();
    if (!ok.includes(r.status)) throw new Error(`${path}: ${r.status} ${text}`);
    return { status: r.status, body: text ? (JSON.parse(text) as unknown) : undefined };
  };
  const get = async <T>(path: string): Promise<T> => {
    const r = await fetch(`${baseUrl}${path}`, { headers });
    if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
    return (await r.json()) as T;
  };
  const nowMs = Date.now();
  const endMs = Math.ceil((nowMs + PERIOD_ENDS_IN_MS) / 1000) * 1000;
  const cutoffMs = endMs + opts.graceMs;
  const closableAt = cutoffMs + CLOSE_SAFETY_MS;
  const stamp = new Date(endMs).toISOString().replace(/[-:]/g, '').slice(0, 15);
  const periods = new Map<string, Period>();
  try {
    for (const c of CUSTOMERS) periods.set(c.key, periodAt(anchorEndingAt(endMs, nowMs, c.timeZone), 'month', nowMs, c.timeZone));
  } catch (err) {
    // A local time repeated by a clock change (its second occurrence) is no period boundary.
    say(`\nBilling demo: skipped: ${(err as Error).message} (a clock change repeats that hour there); run the demo again in an hour`);
    return [];
  }
  say(`\nBilling demo: customers acme, globex, initech; plans starter and scale; monthly subscriptions whose current period ends at ${hms(endMs)} UTC, about a minute from now`);
  say(`Billing demo: each run subscribes anew, for a period ending during it (subscriptions demo-<customer>-${stamp}); earlier runs' subscriptions stay as they were`);
  for (const c of CUSTOMERS) await post('/api/v1/customers', c);
  for (const p of PLANS) await post('/api/v1/plans', p);
  const subs = [
    { id: `demo-acme-${stamp}`, customer: 'acme', plan: 'starter' },
    { id: `demo-globex-${stamp}`, customer: 'globex', plan: 'scale' },
    { id: `demo-initech-${stamp}`, customer: 'initech', plan: 'starter' },
  ];
  for (const s of subs) {
    const p = periods.get(s.customer)!;
    const r = await post('/api/v1/subscriptions', { ...s, start: new Date(p.start).toISOString() });
    if (r.status === 201 && s.customer === 'initech') {
      await post(`/api/v1/subscriptions/${s.id}/change-plan`, { plan: 'scale', effectiveAt: new Date(p.start + 15 * 86_400_000).toISOString() });
    }
  }
  // Usage over 20 days of the period (sent now, before its cutoff), clear of the usage demo's recent hours.
  const fromMs = Math.max(...[...periods.values()].map((p) => p.start)) + 3_600_000;
  const toMs = fromMs + 20 * 86_400_000;
  const events = billingDemoEvents(stamp, fromMs, toMs);
  await post('/api/v1/events', events, [202]);
  say(`Billing demo: sent ${events.length} usage events inside the period (60 API calls and 60 LLM completions per customer; with the usage demo's events above, also in it)`);
  // The close bills what was ingested by the cutoff, so wait for it (and the close's safety margin).
  const graceS = opts.graceMs / 1000;
  const dryRun = closableAt - Date.now() > 5 * 60_000;
  if (dryRun) say(`Billing demo: with BILLING_GRACE=${graceS}s the period can be finalized at ${new Date(closableAt).toISOString()}; showing a preview (dry run) instead (unset BILLING_GRACE to see the close)`);
  while (!dryRun && Date.now() < closableAt) {
    const t = Date.now();
    const left = `closing it at ${hms(closableAt)} UTC, in ${Math.ceil((closableAt - t) / 1000)} s`;
    if (t < endMs) say(`Billing demo: waiting for the period to end at ${hms(endMs)} and its cutoff to pass at ${hms(cutoffMs)} (end + ${graceS}s grace) plus the close's ${CLOSE_SAFETY_MS / 1000}s safety margin; ${left}`);
    else if (t < cutoffMs) say(`Billing demo: the period ended at ${hms(endMs)}; events ingested until its cutoff at ${hms(cutoffMs)} are still on its invoice; ${left}`);
    else say(`Billing demo: the cutoff passed at ${hms(cutoffMs)}; waiting out the close's ${CLOSE_SAFETY_MS / 1000}s safety margin; ${left}`);
    await sleep(Math.min(15_000, closableAt - Date.now()));
  }
  const invoices: InvoiceSummary[] = [];
  for (const c of CUSTOMERS) {
    const localMonth = monthOf(periods.get(c.key)!.start, c.timeZone);
    let close = await post('/api/v1/billing/close', { period: localMonth, customer: c.key, dryRun }, [200, 409]);
    // 409: the scheduler's close run holds the lease (it may be finalizing this very period).
    for (let tries = 0; close.status === 409 && tries < 30; tries++) {
      await sleep(1000);
      close = await post('/api/v1/billing/close', { period: localMonth, customer: c.key, dryRun }, [200, 409]);
    }
    if (close.status !== 200) throw new Error(`billing close for ${c.key}: ${JSON.stringify(close.body)}`);
    const body = close.body as { invoices: InvoiceSummary[]; skipped: { subscription: string; reason: string }[] };
    const inv = body.invoices.find((i) => Date.parse(i.periodEnd) === endMs);
    if (!inv) throw new Error(`billing close for ${c.key} did not finalize the period ending ${new Date(endMs).toISOString()}: ${JSON.stringify(body.skipped)}`);
    invoices.push(inv);
  }
  say(`\n${dryRun ? 'Preview of the' : 'Finalized'} invoices for the period ending ${new Date(endMs).toISOString()} (POST /api/v1/billing/close; usage ingested by the cutoff ${hms(cutoffMs)}):`);
  say('  number           customer   lines   total');
  for (const inv of invoices) say(`  ${(inv.number ?? '(draft)').padEnd(16)} ${inv.customer.padEnd(10)} ${String(inv.lines.length).padStart(5)}   ${inv.total} ${inv.currency}`);
  for (const inv of invoices.filter((i) => i.customer === 'acme' || i.customer === 'initech')) {
    say(`\n  ${inv.number ?? inv.id} (${inv.customer}${inv.customer === 'initech' ? ', upgraded from starter to scale mid-period' : ''}):`);
    for (const l of inv.lines) say(`    ${l.kind.padEnd(16)} ${l.description.slice(0, 58).padEnd(58)} ${l.quantity.padStart(10)} ${l.amount.padStart(10)}`);
  }
  if (dryRun) return invoices;
  // A late event: inside the closed period (among its usage, clear of the usage demo's recent days), ingested after its cutoff.
  const lateMs = fromMs + 10 * 86_400_000;
  const late = { specversion: '1.0', id: `demo-${stamp}-late`, source: 'demo-llm', type: 'llm.completion', subject: 'acme', time: new Date(lateMs).toISOString(), data: { model: 'large', tokens: LATE_TOKENS } };
  await post('/api/v1/events', [late], [202]);
  say(`\nBilling demo: sent a late event for acme (${LATE_TOKENS} LLM tokens at ${new Date(lateMs).toISOString()}, inside the closed period, ingested after its cutoff)`);
  type Projected = { subscriptions: { subscription?: string; amountSoFar: string; projectedTotal: string; currency: string; soFar: InvoiceSummary }[] };
  const corrections = (p: Projected) => p.subscriptions.flatMap((s) => s.soFar.lines.filter((l) => l.kind === 'correction' && Date.parse(l.periodEnd) === endMs));
  const deadline = Date.now() + 30_000;
  let acme = await get<Projected>('/api/v1/customers/acme/projected-invoice');
  while (corrections(acme).length === 0 && Date.now() < deadline) {
    await sleep(500);
    acme = await get<Projected>('/api/v1/customers/acme/projected-invoice');
  }
  const corr = corrections(acme);
  if (corr.length === 0) say('  (the correction has not appeared yet; the processor may be behind)');
  for (const l of corr) say(`  correction on acme's next invoice: ${l.description}  ${l.amount} USD`);
  say('\nNext period, projected (GET /api/v1/customers/{key}/projected-invoice):');
  say('  customer   so far        projected to period end   of which corrections for the closed period');
  for (const c of CUSTOMERS) {
    const body = c.key === 'acme' ? acme : await get<Projected>(`/api/v1/customers/${c.key}/projected-invoice`);
    for (const s of body.subscriptions) {
      if (Date.parse(s.soFar.periodStart) !== endMs) continue;
      const sum = s.soFar.lines.filter((l) => l.kind === 'correction').reduce((a, l) => a.plus(l.amount), new Decimal(0));
      say(`  ${c.key.padEnd(10)} ${s.amountSoFar.padStart(9)} ${s.currency}   ${s.projectedTotal.padStart(12)} ${s.currency}            ${sum.toFixed(2).padStart(8)} ${s.currency}`);
    }
  }
  say(`\nReproduce: ./bin/meterline.mjs close --period ${monthOf(periods.get('initech')!.start, 'UTC')} --customer initech --dry-run    (the same invoice, recomputed at the same cutoff)`);
  say(`           curl -H "Authorization: Bearer $(cat .meterline/admin-key)" "${baseUrl}/api/v1/invoices?format=csv"`);
  say('Billing demo: done.');
  return invoices;
}
