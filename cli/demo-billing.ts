import { Decimal } from '../common/decimal.ts';
import { fromLocal, localParts } from '../rater/index.ts';

/**
 * The billing part of `meterline start --demo`: customers, two plans and three subscriptions
 * that started at local midnight on the first of last month (one upgrades mid-month), usage in
 * the first 25 days of last month and in this month so far, then a billing close of last month
 * and each customer's projected invoice for this month.
 *
 * Last month's usage is sent today, after last month's cutoff (its end plus the grace period),
 * so the close bills the fees and last month's usage appears as a correction on this month's
 * invoice: the late-event rule at work. Idempotent: ids are fixed per month.
 */
interface InvoiceSummary {
  id: string;
  number?: string;
  customer: string;
  currency: string;
  total: string;
  status: string;
  lines: { kind: string; description: string; quantity: string; amount: string }[];
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

export async function runBillingDemo(baseUrl: string, apiKey: string, say: (s: string) => void, nowMs = Date.now()): Promise<InvoiceSummary[]> {
  const headers = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
  const post = async (path: string, body: unknown, ok = [200, 201, 202, 409]) => {
    const r = await fetch(`${baseUrl}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
    const text = await r.text();
    if (!ok.includes(r.status)) throw new Error(`${path}: ${r.status} ${text}`);
    return { status: r.status, body: text ? (JSON.parse(text) as unknown) : undefined };
  };
  const now = new Date(nowMs);
  const monthStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1);
  const thisMonthStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
  const month = new Date(monthStart).toISOString().slice(0, 7);
  /** Local midnight on the first of last month, in a customer's zone. */
  const startIn = (tz: string) => fromLocal({ ...localParts(monthStart, 'UTC'), hh: 0, mm: 0, ss: 0 }, tz);
  say(`\nBilling demo: customers acme, globex, initech; plans starter and scale; subscriptions from ${month}-01`);
  for (const c of CUSTOMERS) await post('/api/v1/customers', c);
  for (const p of PLANS) await post('/api/v1/plans', p);
  const subs = [
    { id: `demo-acme-${month}`, customer: 'acme', plan: 'starter' },
    { id: `demo-globex-${month}`, customer: 'globex', plan: 'scale' },
    { id: `demo-initech-${month}`, customer: 'initech', plan: 'starter' },
  ];
  for (const s of subs) {
    const tz = CUSTOMERS.find((c) => c.key === s.customer)!.timeZone;
    const r = await post('/api/v1/subscriptions', { ...s, start: new Date(startIn(tz)).toISOString() });
    if (r.status === 201 && s.customer === 'initech') {
      await post(`/api/v1/subscriptions/${s.id}/change-plan`, { plan: 'scale', effectiveAt: new Date(monthStart + 15 * 86_400_000).toISOString() });
    }
  }
  // Usage in the first 25 days of last month, and in this month up to an hour ago.
  const events = [];
  const thisMonthMs = Math.max(0, nowMs - 3_600_000 - thisMonthStart);
  for (let i = 0; i < 480; i++) {
    const subject = CUSTOMERS[i % 3]!.key;
    const time = new Date(i < 360 ? monthStart + Math.floor((i / 360) * 25 * 86_400_000) : thisMonthStart + Math.floor(((i - 360) / 120) * thisMonthMs)).toISOString();
    events.push(
      i % 2 === 0
        ? { specversion: '1.0', id: `demo-${month}-${i}`, source: 'demo-gateway', type: 'api.request', subject, time, data: { endpoint: '/search', user: `user-${i % 7}` } }
        : { specversion: '1.0', id: `demo-${month}-${i}`, source: 'demo-llm', type: 'llm.completion', subject, time, data: { model: 'large', tokens: 2500 + (i % 13) * 100 } },
    );
  }
  await post('/api/v1/events', events, [202]);
  say(`Billing demo: sent ${events.length} usage events (360 for ${month}, 120 for this month); closing ${month} (POST /api/v1/billing/close)...`);
  // Wait until the processor has them (the close counts what has been ingested by its cutoff).
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = await fetch(`${baseUrl}/api/v1/meters/api-calls/query?from=${new Date(monthStart).toISOString()}&to=${new Date(monthStart + 25 * 86_400_000).toISOString()}`, { headers });
    const body = (await r.json()) as { data: { value: string }[] };
    if (body.data[0]?.value === '180' || Date.now() > deadline) break;
    await new Promise((res) => setTimeout(res, 300));
  }
  let close = await post('/api/v1/billing/close', { period: month }, [200, 400]);
  let dry = false;
  if (close.status !== 200 || (close.body as { invoices: unknown[] }).invoices.length === 0) {
    say('Billing demo: the period is still in its grace period; showing a preview (dry run) instead');
    close = await post('/api/v1/billing/close', { period: month, dryRun: true }, [200]);
    dry = true;
  }
  const invoices = (close.body as { invoices: InvoiceSummary[] }).invoices;
  say(`\n${dry ? 'Preview of' : 'Finalized'} invoices for periods starting in ${month}:`);
  say('  number           customer   lines   total');
  for (const inv of invoices) say(`  ${(inv.number ?? '(draft)').padEnd(16)} ${inv.customer.padEnd(10)} ${String(inv.lines.length).padStart(5)}   ${inv.total} ${inv.currency}`);
  const initech = invoices.find((i) => i.customer === 'initech');
  if (initech) {
    say(`\n  ${initech.number ?? initech.id} (initech, upgraded from starter to scale on the 16th):`);
    for (const l of initech.lines) say(`    ${l.kind.padEnd(16)} ${l.description.slice(0, 58).padEnd(58)} ${l.quantity.padStart(10)} ${l.amount.padStart(10)}`);
  }
  say(`\n  ${month}'s usage was ingested today, after ${month}'s cutoff: it is billed as a correction on this month's invoice.`);
  say('\nThis month, projected (GET /api/v1/customers/{key}/projected-invoice):');
  say('  customer   so far        projected to period end   of which corrections for last month');
  for (const c of CUSTOMERS) {
    const r = await fetch(`${baseUrl}/api/v1/customers/${c.key}/projected-invoice`, { headers });
    const body = (await r.json()) as { subscriptions: { amountSoFar: string; projectedTotal: string; currency: string; soFar: InvoiceSummary }[] };
    for (const s of body.subscriptions) {
      const corr = s.soFar.lines.filter((l) => l.kind === 'correction').reduce((a, l) => a.plus(l.amount), new Decimal(0));
      say(`  ${c.key.padEnd(10)} ${s.amountSoFar.padStart(9)} ${s.currency}   ${s.projectedTotal.padStart(12)} ${s.currency}            ${corr.toFixed(2).padStart(8)} ${s.currency}`);
    }
  }
  say(`\nReproduce: ./bin/meterline.mjs close --period ${month} --dry-run    (the same invoices, recomputed at the same cutoff)`);
  say(`           curl -H "Authorization: Bearer $(cat .meterline/admin-key)" "${baseUrl}/api/v1/invoices?format=csv"`);
  return invoices;
}
