import { performance } from 'node:perf_hooks';
import type { AccountsPage } from '../../api/contracts.ts';
import type { Bench, Section } from '../harness.ts';
import { round, sleep, summarize, waitFor } from '../lib.ts';

/** Customers of the section (full and quick alike: the figure asked for is at 10,000). */
const CUSTOMERS = 10_000;
const REQUESTS = 200;
const CHANGED_SHARE = 0.01;
const CALLS_PER_CUSTOMER = 3;

const key = (i: number) => `acct-${String(i).padStart(5, '0')}`;

/** Sends events for customers `keys` (CALLS_PER_CUSTOMER calls and one token record each) in batches of 1,000. */
async function sendUsage(b: Bench, keys: string[], tag: string, signal: AbortSignal): Promise<void> {
  const t = new Date(Date.now() - 120_000).toISOString();
  const events = keys.flatMap((k) => [
    ...Array.from({ length: CALLS_PER_CUSTOMER }, (_, j) => ({ specversion: '1.0', source: 'bench-accounts', id: `${tag}-${k}-c${j}`, type: 'api.call', subject: k, time: t, data: { user: `u${j}` } })),
    { specversion: '1.0', source: 'bench-accounts', id: `${tag}-${k}-t`, type: 'llm.usage', subject: k, time: t, data: { tokens: '1234.5', model: 'small' } },
  ]);
  for (let i = 0; i < events.length; i += 1_000) {
    signal.throwIfAborted();
    await b.api('/api/v1/events', { method: 'POST', body: JSON.stringify(events.slice(i, i + 1_000)) });
  }
}

/** Latencies (ms) of `n` sequential GETs of `path`, checking each answer's page size. */
async function latencies(b: Bench, path: string, n: number, want: (p: AccountsPage) => boolean, signal: AbortSignal): Promise<ReturnType<typeof summarize>> {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    signal.throwIfAborted();
    const t = performance.now();
    const p = await b.api<AccountsPage>(path);
    ms.push(performance.now() - t);
    if (!want(p)) throw new Error(`${path}: unexpected answer (${p.items.length} items of ${p.totalCount})`);
  }
  return summarize(ms);
}

const calls = (p: AccountsPage, k: string) => p.items.find((i) => i.customer.key === k)?.usage.find((u) => u.meter === 'calls')?.value;

/**
 * GET /api/v1/accounts at 10,000 customers with subscriptions and usage, served from the
 * accounts cache: how long the cache takes to take them in, request latency (a page of 50 by
 * name, by projected total, and a search), and a refresh after 1% of the customers' usage changed.
 */
export const accounts: Section = {
  name: 'accounts',
  summary: 'GET /api/v1/accounts at 10,000 customers (accounts cache): build, p50/p99 of a page of 50 sorted and searched, refresh after 1% of usage changes',
  timeoutMs: 1_800_000,
  async run(b, signal) {
    b.running();
    const out: Record<string, unknown> = { customers: CUSTOMERS, requestsPerFigure: REQUESTS };
    b.results.accounts = out;
    await b.api('/api/v1/plans', {
      method: 'POST',
      body: JSON.stringify({ key: 'acct', name: 'Accounts bench', currency: 'USD', interval: 'month', baseFee: { amount: '10', timing: 'arrears' }, charges: [{ key: 'calls', meter: 'calls', price: { model: 'graduated', tiers: [{ upTo: '2', unitPrice: '0.10' }, { upTo: null, unitPrice: '0.05' }] } }, { key: 'tokens', meter: 'tokens', price: { model: 'per_unit', unitPrice: '0.0001' } }] }),
    });
    const now = new Date();
    const start = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)).toISOString();
    const keys = Array.from({ length: CUSTOMERS }, (_, i) => key(i));
    b.log(`accounts: creating ${CUSTOMERS} customers with subscriptions`);
    const t0 = performance.now();
    for (let i = 0; i < keys.length; i += 50) {
      signal.throwIfAborted();
      await Promise.all(
        keys.slice(i, i + 50).map(async (k) => {
          await b.api('/api/v1/customers', { method: 'POST', body: JSON.stringify({ key: k, name: `Account ${k.slice(5)} Ltd`, currency: 'USD' }) });
          await b.api('/api/v1/subscriptions', { method: 'POST', body: JSON.stringify({ id: `acct-sub-${k}`, customer: k, plan: 'acct', start }) });
        }),
      );
    }
    out.setupSeconds = round((performance.now() - t0) / 1000, 1);
    b.log(`accounts: usage for every customer (${CUSTOMERS * (CALLS_PER_CUSTOMER + 1)} events)`);
    await sendUsage(b, keys, 'a', signal);

    // Taken in: every customer's calls in the cache, and a refresh with nothing left to recompute.
    const t1 = performance.now();
    const last = keys.at(-1)!;
    await waitFor(async () => b.api<AccountsPage>(`/api/v1/accounts?pageSize=1&q=${last}`), (p) => calls(p, last) === String(CALLS_PER_CUSTOMER), 1_200_000, 1_000);
    await waitFor(async () => b.api<AccountsPage>('/api/v1/accounts?pageSize=1'), (p) => p.totalCount >= CUSTOMERS && p.refresh.recomputed === 0 && !p.refresh.full, 1_200_000, 500);
    out.takenInSeconds = round((performance.now() - t1) / 1000, 1);
    b.log(`  ${JSON.stringify(out)}`);

    // A full recomputation of every customer: a new meter changes every row's usage columns.
    await b.api('/api/v1/meters', { method: 'POST', body: JSON.stringify({ slug: 'acct-extra', eventType: 'acct.extra', aggregation: 'COUNT' }) });
    const full = await waitFor(async () => b.api<AccountsPage>('/api/v1/accounts?pageSize=1'), (p) => p.refresh.full && p.items[0]!.usage.some((u) => u.meter === 'acct-extra'), 1_200_000, 500);
    out.fullRefresh = { seconds: round(full.refresh.durationMs / 1000, 1), recomputed: full.refresh.recomputed, customersPerSecond: round(full.refresh.recomputed / (full.refresh.durationMs / 1000), 1) };
    b.log(`  full refresh: ${JSON.stringify(out.fullRefresh)}`);
    await waitFor(async () => b.api<AccountsPage>('/api/v1/accounts?pageSize=1'), (p) => p.refresh.recomputed === 0 && !p.refresh.full, 1_200_000, 500);

    b.log(`accounts: ${REQUESTS} requests per figure`);
    const total = (p: AccountsPage) => p.totalCount >= CUSTOMERS;
    out.latencyMs = {
      byName: await latencies(b, '/api/v1/accounts?pageSize=50&sort=name', REQUESTS, (p) => p.items.length === 50 && total(p), signal),
      byProjectedDesc: await latencies(b, '/api/v1/accounts?pageSize=50&sort=projected&order=desc&page=7', REQUESTS, (p) => p.items.length === 50 && total(p), signal),
      byUsagePage100: await latencies(b, '/api/v1/accounts?pageSize=50&sort=usage.calls&order=desc&page=100', REQUESTS, (p) => p.items.length === 50 && total(p), signal),
      search: await latencies(b, '/api/v1/accounts?pageSize=50&sort=name&q=account%200123', REQUESTS, (p) => p.totalCount === 10, signal),
    };
    b.log(`  ${JSON.stringify(out.latencyMs)}`);

    // 1% of the customers get more usage: the refresh recomputes those (and only those).
    const changed = keys.filter((_, i) => i % Math.round(1 / CHANGED_SHARE) === 0);
    const t2 = performance.now();
    await sendUsage(b, changed, 'b', signal);
    const sentMs = performance.now() - t2;
    const want = String(2 * CALLS_PER_CUSTOMER);
    const seen = await waitFor(async () => b.api<AccountsPage>(`/api/v1/accounts?pageSize=1000&sort=usage.calls&order=desc`), (p) => changed.every((k) => calls(p, k) === want), 600_000, 200);
    const visibleMs = performance.now() - t2;
    // The refresh that took them in may have been split by the processor's batches: read the figures of a settled one.
    const settled = await waitFor(async () => b.api<AccountsPage>('/api/v1/accounts?pageSize=1'), (p) => p.refresh.recomputed === 0 && !p.refresh.full, 600_000, 200);
    out.incremental = { changedCustomers: changed.length, sendMs: round(sentMs), sendToVisibleMs: round(visibleMs), lastRefreshOfThem: seen.refresh, settledRefreshMs: settled.refresh.durationMs };
    b.log(`  incremental: ${JSON.stringify(out.incremental)}`);
    await sleep(0);
  },
};
