import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import type { NatsServerHandle } from '../../common/nats-server.ts';
import type { Unbilled } from '../../api/contracts.ts';
import { ce, eventually, startTestNats, startTestRuntime, testConfig, type TestRuntime } from '../harness.ts';
import { launchChromium, SCREENSHOT_DIR } from './browser.ts';
import { money } from '../../web/src/format.ts';

const DESKTOP = { width: 1366, height: 900 };
const PHONE = { width: 390, height: 844 };
const DAY = 86_400_000;
const HOUR = 3_600_000;
const now = new Date();
const S = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1); // last month: the page's default
const MONTH = new Date(S).toISOString().slice(0, 7);
const iso = (ms: number) => new Date(ms).toISOString();

/**
 * The Unbilled usage page in Chromium against a real runtime on a real port: every row and
 * total on screen is the API's (GET /api/v1/billing/unbilled), grouped by reason, with amounts
 * per currency; at 390 px the page does not scroll sideways (wide tables scroll in their box).
 */
describe('Unbilled usage page in Chromium', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;
  let chromium: Awaited<ReturnType<typeof launchChromium>>;
  let browser: Browser;
  let base = '';
  let api: Unbilled;

  const call = async (method: string, url: string, body?: unknown) => {
    const r = await fetch(`${base}${url}`, { method, headers: { authorization: `Bearer ${rt.adminKey}`, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) });
    if (r.status >= 300) throw new Error(`${method} ${url}: ${r.status} ${await r.text()}`);
    return r.json() as Promise<unknown>;
  };

  beforeAll(async () => {
    chromium = await launchChromium();
    browser = chromium.browser;
    nats = await startTestNats();
    rt = await startTestRuntime(testConfig(nats.url, { INGEST_MAX_PAST: '400d', BILLING_SCHEDULE: '0 0 1 1 *', ANOMALY_SCHEDULE: '0 0 1 1 *' }));
    base = rt.url!.replace('0.0.0.0', '127.0.0.1');
    await call('POST', '/api/v1/meters', { slug: 'calls', eventType: 'call', aggregation: 'COUNT' });
    await call('POST', '/api/v1/meters', { slug: 'gpu-seconds', eventType: 'gpu', aggregation: 'SUM', valueProperty: '$.seconds' });
    await call('POST', '/api/v1/plans', { key: 'pro', name: 'Pro', currency: 'USD', interval: 'month', charges: [{ key: 'calls', meter: 'calls', price: { model: 'per_unit', unitPrice: '0.0125' } }] });
    await call('POST', '/api/v1/plans', { key: 'euro', name: 'Euro', currency: 'EUR', interval: 'month', charges: [{ key: 'calls', meter: 'calls', price: { model: 'per_unit', unitPrice: '0.02' } }] });
    await call('POST', '/api/v1/customers', { key: 'acme-industries-international', name: 'Acme', currency: 'USD', timeZone: 'UTC' });
    await call('POST', '/api/v1/customers', { key: 'beta-gmbh', name: 'Beta', currency: 'EUR', timeZone: 'UTC' });
    await call('POST', '/api/v1/subscriptions', { id: 'sub-acme', customer: 'acme-industries-international', plan: 'pro', start: iso(S - 10 * DAY), end: iso(S + 9 * DAY + 7 * HOUR) });
    let n = 0;
    const ev = (type: string, subject: string, t: number, data: Record<string, unknown> = {}) => ce({ id: `b-${n++}`, type, subject, time: iso(t), data });
    const many = (k: number, type: string, subject: string, from: number, data: Record<string, unknown> = {}) => Array.from({ length: k }, (_, i) => ev(type, subject, from + i * 60_000, data));
    const events = [
      ...many(40, 'call', 'acme-industries-international', S + DAY),
      ...many(1234, 'call', 'acme-industries-international', S + 12 * DAY),
      ...many(25, 'call', 'beta-gmbh', S + 2 * DAY),
      ...many(3, 'call', 'device-7f3a9c2e-unknown-subject-with-a-long-name', S + 3 * DAY),
      ...many(4, 'gpu', 'beta-gmbh', S + 4 * DAY, { seconds: '2.125' }),
    ];
    const r = await fetch(`${base}/api/v1/events`, { method: 'POST', headers: { authorization: `Bearer ${rt.adminKey}`, 'content-type': 'application/json' }, body: JSON.stringify(events) });
    expect(r.status).toBe(202);
    // Wait until every event is counted, then take the API's answer the page must show.
    api = await eventually(
      async () => (await call('GET', `/api/v1/billing/unbilled?month=${MONTH}`)) as Unbilled,
      (b) => b.rows.length === 4 && b.rows.find((x) => x.meter === 'calls' && x.subject.startsWith('acme'))?.quantity === '1234' && b.rows.find((x) => x.meter === 'gpu-seconds')?.quantity === '8.5',
    );
  }, 180_000);

  afterAll(async () => {
    await chromium?.close();
    await rt?.stop();
    await nats?.stop();
  });

  const openPage = async (viewport: { width: number; height: number }): Promise<{ page: Page; problems: string[]; close: () => Promise<void> }> => {
    const ctx = await browser.newContext({ viewport });
    const page = await ctx.newPage();
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`page error: ${String(e)}`));
    page.on('console', (m) => (m.type() === 'error' ? problems.push(`console error: ${m.text()}`) : undefined));
    page.on('response', (r) => (r.status() >= 400 ? problems.push(`HTTP ${r.status()}: ${r.url()}`) : undefined));
    await page.goto(`${base}/ui/`);
    await page.getByLabel('API key').fill(rt.adminKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Unbilled usage' }).click();
    await page.locator('table.unbilled-totals').waitFor();
    return { page, problems, close: () => ctx.close() };
  };

  /** What the page shows: each row's reason, subject, meter and exact values, and each total. */
  const onScreen = async (page: Page) => ({
    month: await page.locator('#unbilled-month').inputValue(),
    rows: await page.locator('table.unbilled-rows tbody tr').evaluateAll((trs) =>
      trs.map((tr) => {
        const cells = tr.querySelectorAll('td');
        return { reason: tr.getAttribute('data-reason'), subject: tr.getAttribute('data-subject'), meter: tr.getAttribute('data-meter'), quantity: cells[1]!.getAttribute('data-value'), amount: cells[2]!.getAttribute('data-value'), amountText: cells[2]!.textContent, section: tr.closest('section')?.querySelector('h2')?.textContent };
      }),
    ),
    totals: await page.locator('table.unbilled-totals tbody tr').evaluateAll((trs) =>
      trs.map((tr) => {
        const cells = tr.querySelectorAll('td');
        return { reason: tr.getAttribute('data-total-reason'), currency: tr.getAttribute('data-currency'), rows: cells[0]!.getAttribute('data-value'), amount: cells[1]!.getAttribute('data-value'), amountText: cells[1]!.textContent };
      }),
    ),
  });

  const SECTION: Record<string, string> = { meter_not_priced: 'Meters no plan charges', unknown_subject: 'Unknown subjects', no_subscription: 'No subscription', meter_not_in_plan: 'Meter not in the plan' };
  const shown = (amount: string | null, currency: string | null) => (amount === null || currency === null ? 'no price' : money(amount, currency));

  it.each([
    ['desktop', DESKTOP],
    ['phone', PHONE],
  ])('shows the API rows and totals, grouped by reason (%s)', async (name, viewport) => {
    const { page, problems, close } = await openPage(viewport);
    const s = await onScreen(page);
    expect(s.month).toBe(MONTH);
    expect(s.rows).toEqual(
      api.rows.map((r) => ({ reason: r.reason, subject: r.subject, meter: r.meter, quantity: r.quantity, amount: r.amount ?? '', amountText: shown(r.amount, r.currency), section: SECTION[r.reason] })),
    );
    expect(s.totals).toEqual([
      ...api.totals.map((t) => ({ reason: t.reason, currency: t.currency ?? '', rows: String(t.rows), amount: t.amount ?? '', amountText: shown(t.amount, t.currency) })),
      ...api.currencyTotals.map((t) => ({ reason: 'all', currency: t.currency, rows: String(t.rows), amount: t.amount, amountText: money(t.amount, t.currency) })),
    ]);
    // Both currencies are there: the EUR customer's calls and the USD customer's after the end.
    expect(api.currencyTotals.map((t) => t.currency)).toEqual(['EUR', 'USD']);
    // No sideways page scroll; a table wider than the screen scrolls inside its own box.
    // A string: this file is type-checked without the DOM's globals.
    const widths = (await page.evaluate("({ doc: document.documentElement.scrollWidth, win: window.innerWidth, wraps: [...document.querySelectorAll('.table-wrap')].map((w) => w.getBoundingClientRect().right) })")) as { doc: number; win: number; wraps: number[] };
    expect(widths.doc, `page width at ${widths.win} px`).toBeLessThanOrEqual(widths.win);
    for (const right of widths.wraps) expect(right).toBeLessThanOrEqual(widths.win);
    fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, `unbilled-${name}.png`), fullPage: true });
    expect(problems).toEqual([]);
    await close();
  });
});
