import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { NatsServerHandle } from '../../common/nats-server.ts';
import { startTestNats, startTestRuntime, testConfig, eventually, type TestRuntime } from '../harness.ts';
import { launchChromium, SCREENSHOT_DIR } from './browser.ts';
import { CUSTOMERS, seed, type Seeded } from './seed.ts';

/**
 * The dashboard and the customer portal in a real browser (Debian's Chromium through
 * playwright-core) against a real runtime on a real port: nats-server, embedded ClickHouse,
 * processor and API. What is checked is what a person sees: the numbers on screen are the
 * API's numbers, adjustments show up where they should, a portal token sees one customer only,
 * and a read-only key changes nothing. The main pages are saved to docs/screenshots/.
 */
describe('dashboard and portal in Chromium', () => {
  let nats: NatsServerHandle;
  let rt: TestRuntime;
  let chromium: Awaited<ReturnType<typeof launchChromium>>;
  let browser: Browser;
  let base = '';
  let seeded: Seeded;
  let readKey = '';

  const api = async <T = unknown>(pathAndQuery: string, token: string, init: RequestInit = {}): Promise<{ status: number; body: T }> => {
    const r = await fetch(`${base}${pathAndQuery}`, { ...init, headers: { authorization: `Bearer ${token}`, ...(init.body ? { 'content-type': 'application/json' } : {}), ...(init.headers ?? {}) } });
    const text = await r.text();
    return { status: r.status, body: (text ? JSON.parse(text) : undefined) as T };
  };
  const shot = async (page: Page, name: string, fullPage = true) => {
    fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}.png`), fullPage });
  };
  /** A fresh browser context (own sessionStorage) signed in to the dashboard with `key`. */
  const signedIn = async (key: string, viewport = { width: 1366, height: 900 }): Promise<{ ctx: BrowserContext; page: Page }> => {
    const ctx = await browser.newContext({ viewport });
    const page = await ctx.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${base}/ui/`);
    await page.getByLabel('API key').fill(key);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('navigation', { name: 'Main' }).waitFor();
    expect(errors).toEqual([]);
    return { ctx, page };
  };

  beforeAll(async () => {
    chromium = await launchChromium();
    browser = chromium.browser;
    nats = await startTestNats();
    rt = await startTestRuntime(testConfig(nats.url, { INGEST_MAX_PAST: '120d', BILLING_SCHEDULE: '0 0 1 1 *', ANOMALY_SCHEDULE: '0 0 1 1 *' }));
    base = rt.url!.replace('0.0.0.0', '127.0.0.1');
    seeded = await seed(rt);
    readKey = await rt.key('read');
  }, 120_000);
  afterAll(async () => {
    await chromium?.close();
    await rt?.stop();
    await nats?.stop();
  });

  it('accounts: every customer with the API’s numbers, searchable, sortable', async () => {
    // The accounts cache has taken in the seed once a refresh finds nothing more to recompute.
    await eventually(() => api<{ refresh: { recomputed: number; full: boolean } }>('/api/v1/accounts', rt.adminKey), (r) => r.status === 200 && r.body.refresh.recomputed === 0 && !r.body.refresh.full, 60_000);
    const { ctx, page } = await signedIn(rt.adminKey);
    const t0 = Date.now();
    await page.locator('table.accounts tbody tr').first().waitFor();
    // Loads well under a second on this data (generous bound for a loaded CI machine).
    expect(Date.now() - t0).toBeLessThan(3_000);
    const summary = (await api<{ items: { customer: { key: string }; usage: { meter: string; value: string }[]; projected: { projectedTotal: string } | null }[] }>('/api/v1/accounts', rt.adminKey)).body;
    for (const item of summary.items) {
      const row = page.locator(`tr[data-customer="${item.customer.key}"]`);
      for (const u of item.usage) {
        // Usage is live (the test's events are all in the past, so the numbers are stable).
        expect(await row.locator(`td[data-meter="${u.meter}"]`).getAttribute('data-value'), `${item.customer.key} ${u.meter}`).toBe(u.value);
        expect(await row.locator(`td[data-meter="${u.meter}"]`).textContent()).toBe(u.value);
      }
      expect(await row.locator('td[data-col="projected"]').getAttribute('data-value')).toBe(item.projected!.projectedTotal);
    }
    // Money in the customer's currency.
    expect(await page.locator('tr[data-customer="globex"] td[data-col="projected"]').textContent()).toMatch(/^€\d+\.\d{2}$/);
    expect(await page.locator('tr[data-customer="acme"] td[data-col="projected"]').textContent()).toMatch(/^\$\d+\.\d{2}$/);
    await shot(page, 'accounts');

    // Sort by API calls, descending first (numbers), then search.
    await page.getByRole('button', { name: /API calls/ }).click();
    // Sorted on the server: the rows change when its answer arrives.
    await expect.poll(() => page.locator('table.accounts tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-customer')))).toEqual(['acme', 'globex', 'initech']);
    await page.getByLabel('Search').fill('glob');
    await expect.poll(() => page.locator('table.accounts tbody tr').count()).toBe(1);
    // Keyboard: the customer link is reachable and opens the account.
    await page.locator('tr[data-customer="globex"] a').focus();
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { level: 1, name: 'Globex GmbH' }).waitFor();

    // The phone layout.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${base}/ui/#/accounts`);
    await page.locator('table.accounts tbody tr').first().waitFor();
    await shot(page, 'accounts-phone', false);
    await ctx.close();
  });

  it("account: the chart's totals are the API's totals, with and without a breakdown", async () => {
    const { ctx, page } = await signedIn(rt.adminKey);
    await page.goto(`${base}/ui/#/accounts/acme`);
    await page.getByRole('heading', { level: 1, name: 'Acme Corp' }).waitFor();
    const check = async (meter: string, groupBy?: string) => {
      const box = page.locator(`article.meter[data-meter="${meter}"]`);
      await box.locator('table.totals-table').waitFor();
      const from = (await box.getAttribute('data-from'))!;
      const to = (await box.getAttribute('data-to'))!;
      const q = new URLSearchParams({ subject: 'acme', from, to, windowTimeZone: 'America/New_York', ...(groupBy ? { groupBy } : {}) });
      const fromApi = (await api<{ data: { value: string; groupBy: Record<string, string> }[] }>(`/api/v1/meters/${meter}/query?${q}`, rt.adminKey)).body.data;
      const shown = await box.locator('table.totals-table tbody tr').evaluateAll((rows) => rows.map((r) => [r.getAttribute('data-group'), r.querySelector('td')?.getAttribute('data-value'), r.querySelector('td')?.textContent]));
      if (!groupBy) {
        expect(shown).toEqual([['', fromApi[0]!.value, fromApi[0]!.value]]);
        expect(Number(fromApi[0]!.value)).toBeGreaterThan(0);
      } else {
        const expected = fromApi.map((r) => [r.groupBy[groupBy]!, r.value, r.value]).sort((a, b) => a[0]!.localeCompare(b[0]!));
        expect(shown.slice(0, -1)).toEqual(expected);
      }
      // The chart is drawn (uPlot canvas) beside the table.
      await box.locator('.chart canvas').waitFor();
    };
    for (const m of ['api-calls', 'tokens', 'active-users']) await check(m);
    await page.locator('article.meter[data-meter="api-calls"]').getByLabel('Breakdown').selectOption('endpoint');
    await check('api-calls', 'endpoint');
    await page.locator('article.meter[data-meter="tokens"]').getByLabel('Breakdown').selectOption('model');
    await check('tokens', 'model');
    // By day, over the last 30 days: totals follow the range.
    const periodFrom = await page.locator('article.meter[data-meter="api-calls"]').getAttribute('data-from');
    await page.getByLabel('Windows').selectOption('DAY');
    await page.getByLabel('Range').selectOption('30d');
    await expect.poll(() => page.locator('article.meter[data-meter="api-calls"]').getAttribute('data-from')).not.toBe(periodFrom);
    await check('api-calls', 'endpoint');
    await check('active-users');

    // The finalized invoice of last month with its tier breakdown.
    const inv = seeded.invoices.acme!;
    const d = page.locator(`details[data-invoice="${inv.id}"]`);
    await d.locator('summary').click();
    await d.locator('table.lines').waitFor();
    expect(await d.locator('tfoot td[data-total]').getAttribute('data-total')).toBe(inv.total);
    expect(await d.locator('table.breakdown').count()).toBeGreaterThan(0);
    const usageLine = inv.lines.find((l) => l.kind === 'usage' && l.meter === 'api-calls')!;
    expect(await d.locator(`tr[data-line="${usageLine.id}"] td`).nth(1).textContent()).toBe(usageLine.quantity);
    await page.evaluate('window.scrollTo(0, 0)');
    await shot(page, 'account');
    await ctx.close();
  });

  it('an adjustment made in the UI is in the audit trail and on the projected invoice', async () => {
    const { ctx, page } = await signedIn(rt.adminKey);
    await page.goto(`${base}/ui/#/accounts/initech`);
    await page.getByRole('heading', { level: 1, name: 'Initech' }).waitFor();
    const before = (await api<{ subscriptions: { projectedTotal: string }[] }>('/api/v1/customers/initech/projected-invoice', rt.adminKey)).body.subscriptions[0]!.projectedTotal;
    await page.locator('[data-testid="projected-total"]').waitFor();
    expect(await page.locator('[data-testid="projected-total"]').getAttribute('data-value')).toBe(before);

    await page.getByLabel('Kind').selectOption('credit');
    await page.getByLabel(/^Amount/).fill('7.50');
    await page.getByLabel('Reason code').selectOption('outage_credit');
    await page.getByLabel('Note', { exact: true }).fill('API outage on the 3rd');
    await page.getByRole('button', { name: 'Add adjustment' }).click();
    await page.getByText('Added credit (outage_credit).').waitFor();

    const trail = page.locator('table.audit tbody tr').first();
    await expect.poll(() => trail.locator('td[data-col="reason"]').textContent()).toBe('outage_credit');
    expect(await trail.textContent()).toContain('API outage on the 3rd');
    const adj = (await api<{ items: { id: string; amount: string; actor: string }[] }>('/api/v1/adjustments?customer=initech', rt.adminKey)).body.items;
    expect(adj).toHaveLength(1);
    expect(await trail.getAttribute('data-adjustment')).toBe(adj[0]!.id);

    // The projected invoice now carries the credit, and its total is the API's.
    const after = (await api<{ subscriptions: { projectedTotal: string; projected: { lines: { kind: string; amount: string }[] } }[] }>('/api/v1/customers/initech/projected-invoice', rt.adminKey)).body.subscriptions[0]!;
    expect(after.projected.lines.filter((l) => l.kind === 'adjustment').map((l) => l.amount)).toEqual(['-7.50']);
    await expect.poll(() => page.locator('[data-testid="projected-total"]').getAttribute('data-value')).toBe(after.projectedTotal);
    expect(after.projectedTotal).not.toBe(before);
    expect(await page.locator('.projected tr[data-kind="adjustment"] td').last().getAttribute('data-value')).toBe('-7.50');
    expect(await page.locator('.projected tr[data-kind="adjustment"] td').last().textContent()).toBe('-$7.50');
    await ctx.close();
  });

  it('reconciliation, dead letters and catalog pages', async () => {
    const { ctx, page } = await signedIn(rt.adminKey);
    await page.goto(`${base}/ui/#/reconciliation`);
    await page.getByLabel('Month').fill(seeded.lastMonth);
    await page.getByRole('button', { name: 'Reconcile' }).click();
    await page.locator('table.recon-usage tbody tr').first().waitFor();
    const rows = await page.locator('table.recon-usage tbody tr').evaluateAll((rs) => rs.map((r) => [r.getAttribute('data-customer'), r.getAttribute('data-meter'), r.getAttribute('data-status')]));
    for (const cu of CUSTOMERS) for (const m of ['api-calls', 'tokens']) expect(rows, `${cu.key} ${m}`).toContainEqual([cu.key, m, 'ok']);
    // The rollups table comes from its own request (reconcile, event by event): wait for it too.
    await page.locator('table.recon-rollups tbody tr').first().waitFor();
    expect(await page.locator('table.recon-rollups tbody tr[data-ok="true"]').count()).toBe(3);
    await page.getByText(`No mismatches found for ${seeded.lastMonth}.`).waitFor();
    await page.getByText('Stripe sync is not configured').waitFor();
    await shot(page, 'reconciliation');
    await page.locator('table.recon-usage a', { hasText: 'globex' }).first().click();
    await page.getByRole('heading', { level: 1, name: 'Globex GmbH' }).waitFor();

    await eventually(async () => (await api<{ total: number }>('/api/v1/dead-letters', rt.adminKey)).body.total, (n) => n === 1);
    await page.goto(`${base}/ui/#/dead-letters`);
    const dl = page.locator('table.dead-letters tbody tr').first();
    await dl.waitFor();
    expect(await dl.locator('.reason').textContent()).toMatch(/tokens/);
    await shot(page, 'dead-letters');
    // Re-drive: the cause is not fixed, so the event comes back as a dead letter (a new one).
    await dl.getByRole('button', { name: 'Re-drive' }).click();
    await dl.getByText(/Re-driven \(stream seq \d+\)/).waitFor();

    await page.goto(`${base}/ui/#/catalog`);
    await page.locator('tr[data-plan="pro"]').waitFor();
    expect(await page.locator('tr[data-meter]').count()).toBe(3);
    expect(await page.locator('tr[data-subscription]').count()).toBe(3);
    await shot(page, 'catalog');
    await ctx.close();
  });

  it('a portal token sees its own customer only: in the portal UI and through the API', async () => {
    // An admin creates the portal link in the UI.
    const { ctx: adminCtx, page: admin } = await signedIn(rt.adminKey);
    await admin.goto(`${base}/ui/#/accounts/acme`);
    await admin.getByRole('button', { name: 'Create portal link' }).click();
    const link = await admin.getByLabel(/Portal link/).inputValue();
    expect(link).toMatch(/\/ui\/portal\/#token=mlp_/);
    const token = /#token=(mlp_[\w-]+)/.exec(link)![1]!;
    await adminCtx.close();

    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    await page.goto(link.replace(/^https?:\/\/[^/]+/, base));
    await page.getByRole('heading', { level: 1, name: 'Your usage' }).waitFor();
    // The token left the address bar; the URL names the customer.
    expect(page.url()).not.toContain('mlp_');
    expect(page.url()).toContain('?customer=acme');
    const projected = (await api<{ subscriptions: { projectedTotal: string }[] }>('/api/v1/portal/projected-invoice', token)).body.subscriptions[0]!.projectedTotal;
    expect(await page.locator('[data-testid="portal-projected"]').getAttribute('data-value')).toBe(projected);
    await page.locator('article.meter[data-meter="api-calls"] table.totals-table').waitFor();
    await page.locator(`details[data-invoice="${seeded.invoices.acme!.id}"]`).waitFor();
    await page.getByText('64 API calls in the hour').waitFor();
    const html = await page.content();
    expect(html).not.toContain('Globex');
    expect(html).not.toContain('Initech');
    await shot(page, 'portal');

    // A typed URL naming another customer: refused, nothing of theirs on screen.
    await page.goto(`${base}/ui/portal/?customer=globex`);
    await page.getByRole('heading', { name: 'Not allowed' }).waitFor();
    expect(await page.content()).not.toContain('Globex GmbH');
    // The dashboard does not open with a portal token either.
    await page.goto(`${base}/ui/`);
    await page.getByLabel('API key').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('That is a customer-portal token').waitFor();
    await ctx.close();

    // Direct API calls with the token.
    const globexInvoice = seeded.invoices.globex!.id;
    expect((await api('/api/v1/portal/account?customer=globex', token)).status).toBe(403);
    expect((await api('/api/v1/portal/meters/api-calls/query?subject=globex', token)).status).toBe(403);
    expect((await api('/api/v1/portal/invoices?customer=globex', token)).status).toBe(403);
    expect((await api(`/api/v1/portal/invoices/${globexInvoice}`, token)).status).toBe(404);
    expect((await api(`/api/v1/portal/invoices/${seeded.invoices.acme!.id}`, token)).status).toBe(200);
    for (const url of ['/api/v1/accounts', '/api/v1/accounts/globex', '/api/v1/customers/globex/projected-invoice', `/api/v1/invoices/${globexInvoice}`, '/api/v1/meters/api-calls/query?subject=globex', '/api/v1/anomalies?customer=globex', '/api/v1/whoami']) {
      const r = await api<{ code: string }>(url, token);
      expect(r.status, url).toBe(403);
      expect(r.body.code).toBe('AUTH_FORBIDDEN');
    }
    expect((await api('/api/v1/adjustments', token, { method: 'POST', body: JSON.stringify({ customer: 'acme', kind: 'credit', amount: '100', reasonCode: 'goodwill' }) })).status).toBe(403);
  });

  it('a read-only key can look but not change anything: no controls, and the API refuses', async () => {
    const { ctx, page } = await signedIn(readKey);
    expect(await page.locator('#key-scopes').textContent()).toBe('read');
    await page.goto(`${base}/ui/#/accounts/acme`);
    await page.getByRole('heading', { level: 1, name: 'Acme Corp' }).waitFor();
    await page.locator('table.anomalies').waitFor();
    await page.getByText('Read-only: creating adjustments needs the billing scope.').waitFor();
    await page.getByText(/Your key cannot see invoices/).waitFor();
    expect(await page.getByRole('button', { name: 'Add adjustment' }).count()).toBe(0);
    expect(await page.getByRole('button', { name: 'Acknowledge' }).count()).toBe(0);
    expect(await page.getByRole('button', { name: 'Resolve' }).count()).toBe(0);
    expect(await page.getByRole('button', { name: 'Create portal link' }).count()).toBe(0);
    // What it can read is there.
    await page.locator('article.meter[data-meter="api-calls"] table.totals-table').waitFor();
    await page.locator('[data-testid="projected-total"]').waitFor();
    await page.goto(`${base}/ui/#/dead-letters`);
    await page.locator('table.dead-letters tbody tr').first().waitFor();
    expect(await page.getByRole('button', { name: 'Re-drive' }).count()).toBe(0);
    await ctx.close();

    // Forced through the API with the same key: 403 every time, and nothing changed.
    const [anomaly] = seeded.anomalyIds;
    const writes: [string, unknown][] = [
      ['/api/v1/adjustments', { customer: 'acme', kind: 'credit', amount: '1.00', reasonCode: 'goodwill' }],
      [`/api/v1/anomalies/${anomaly}/acknowledge`, {}],
      [`/api/v1/anomalies/${anomaly}/resolve`, { note: 'x' }],
      ['/api/v1/dead-letters/1/redrive', {}],
      ['/api/v1/portal-tokens', { customer: 'acme' }],
      ['/api/v1/api-keys', { name: 'escalate', scopes: ['admin'] }],
      ['/api/v1/billing/close', { period: seeded.lastMonth }],
    ];
    for (const [url, body] of writes) {
      const r = await api<{ code: string }>(url, readKey, { method: 'POST', body: JSON.stringify(body) });
      expect(r.status, url).toBe(403);
      expect(r.body.code).toBe('AUTH_FORBIDDEN');
    }
    expect((await api<{ items: unknown[] }>('/api/v1/adjustments?customer=acme', rt.adminKey)).body.items).toEqual([]);
    expect((await api<{ status: string }>(`/api/v1/anomalies/${anomaly}`, rt.adminKey)).body.status).toBe('open');
  });
});
