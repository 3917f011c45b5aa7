import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import type { NatsServerHandle } from '../../common/nats-server.ts';
import { startTestNats, startTestRuntime, testConfig, eventually, type TestRuntime } from '../harness.ts';
import { launchChromium, SCREENSHOT_DIR } from './browser.ts';
import { CUSTOMERS, seed, type Seeded } from './seed.ts';
import { compareDecimal, money, quantity } from '../../web/src/format.ts';

const DESKTOP = { width: 1366, height: 900 };
const PHONE = { width: 390, height: 844 };
/** An ISO timestamp, as finance found one inside an invoice line. */
const ISO_TIME = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;
/** Dollars with two decimals and grouped thousands: "$5,854.93", "-$7.50". */
const USD = /^-?\$\d{1,3}(,\d{3})*\.\d{2}$/;
const EUR = /^-?€\d{1,3}(,\d{3})*\.\d{2}$/;
/** A number grouped by thousands: "47,375,491", "1,000.5". */
const GROUPED = /^-?\d{1,3}(,\d{3})*(\.\d+)?$/;

/**
 * Console errors and failed requests of a page (a 404 of a route that does not exist, a 500,
 * a script error): collected so a test can say none happened.
 */
function watch(page: Page): string[] {
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`page error: ${String(e)}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  page.on('requestfailed', (r) => {
    // A navigation to another document cancels the old one's requests: not a failure of the page.
    if (r.failure()?.errorText !== 'net::ERR_ABORTED') problems.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  return problems;
}

/** No sideways page scroll: the document is no wider than the viewport. */
async function fitsViewport(page: Page, what: string): Promise<void> {
  // Runs in the page (the root tsconfig has no DOM types: the few globals used are typed here).
  const r = await page.evaluate(() => {
    const g = globalThis as unknown as { document: { documentElement: { scrollWidth: number } }; innerWidth: number };
    return { scrollWidth: g.document.documentElement.scrollWidth, width: g.innerWidth };
  });
  expect(r.scrollWidth, `${what}: page width at a ${r.width} px viewport`).toBeLessThanOrEqual(r.width);
}

/** Every element matched is fully on screen horizontally and its text is not cut by its own box. */
async function notClipped(locator: Locator, what: string): Promise<void> {
  const boxes = await locator.evaluateAll((els) =>
    els.map((el) => {
      const b = el.getBoundingClientRect();
      return { text: el.textContent ?? '', left: b.left, right: b.right, overflow: el.scrollWidth - el.clientWidth, width: (globalThis as unknown as { innerWidth: number }).innerWidth };
    }),
  );
  expect(boxes.length, what).toBeGreaterThan(0);
  for (const b of boxes) {
    expect(b.left, `${what} "${b.text}"`).toBeGreaterThanOrEqual(0);
    expect(b.right, `${what} "${b.text}"`).toBeLessThanOrEqual(b.width);
    expect(b.overflow, `${what} "${b.text}" overflows its box`).toBeLessThanOrEqual(1);
  }
}

/**
 * The chart's y-axis labels are whole: uPlot draws them on the canvas right-aligned against the
 * axis, so a label wider than the axis runs off the canvas's left edge (",25,000") and leaves ink
 * in its first columns. Returns the labels (kept on the chart element) for format checks.
 */
async function yAxisWhole(box: Locator, what: string): Promise<string[]> {
  await box.locator('.chart canvas').waitFor();
  const ink = await box.locator('.chart canvas').evaluate((el) => {
    const c = el as unknown as { height: number; getContext(kind: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: ArrayLike<number> } } };
    const d = c.getContext('2d').getImageData(0, 0, 3, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i]! > 0) n++;
    return n;
  });
  expect(ink, `${what}: pixels drawn at the canvas's left edge (a clipped y label)`).toBe(0);
  return ((await box.locator('.chart').getAttribute('data-y-labels')) ?? '').split('|');
}

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
  const signedIn = async (key: string, viewport = DESKTOP): Promise<{ ctx: BrowserContext; page: Page; problems: string[] }> => {
    const ctx = await browser.newContext({ viewport });
    const page = await ctx.newPage();
    const problems = watch(page);
    await page.goto(`${base}/ui/`);
    await page.getByLabel('API key').fill(key);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('navigation', { name: 'Main' }).waitFor();
    expect(problems).toEqual([]);
    return { ctx, page, problems };
  };

  /**
   * The reconciliation page for last month: the summary counts what the rows show (mismatches
   * and pending corrections alike), Acme's late call is pending correction, and with Stripe sync
   * off the Stripe section says so from the API's answer (200, enabled: false), not from a 404.
   */
  const reconciliation = async (page: Page) => {
    await page.goto(`${base}/ui/#/reconciliation`);
    await page.getByLabel('Month').fill(seeded.lastMonth);
    await page.getByRole('button', { name: 'Reconcile' }).click();
    // Each table comes from its own request (the rollups reconcile event by event): wait for all.
    await page.locator('table.recon-usage tbody tr').first().waitFor();
    await page.locator('table.recon-rollups tbody tr').first().waitFor();
    const summary = page.locator('#recon-summary');
    await summary.waitFor();
    const rows = await page.locator('table.recon-usage tbody tr').evaluateAll((rs) => rs.map((r) => [r.getAttribute('data-customer'), r.getAttribute('data-meter'), r.getAttribute('data-status')]));
    for (const cu of CUSTOMERS) {
      for (const m of ['api-calls', 'tokens']) {
        const pending = seeded.pending.some((x) => x.customer === cu.key && x.meter === m);
        expect(rows, `${cu.key} ${m}`).toContainEqual([cu.key, m, pending ? 'pending' : 'ok']);
      }
    }
    expect(await page.locator('table.recon-rollups tbody tr[data-ok="true"]').count()).toBe(3);
    const mismatches = (await page.locator('table.recon-usage tr[data-status="mismatch"]').count()) + (await page.locator('table.recon-rollups tr[data-ok="false"]').count()) + (await page.locator('section[aria-labelledby="stripe-h"] tr.row-bad').count());
    const pending = await page.locator('table.recon-usage tr[data-status="pending"]').count();
    expect(pending).toBe(seeded.pending.length);
    const text = (await summary.textContent())!;
    expect(text).toContain(`${seeded.lastMonth}: ${mismatches} mismatch${mismatches === 1 ? '' : 'es'}, ${pending} pending correction`);
    expect([await summary.getAttribute('data-mismatches'), await summary.getAttribute('data-pending')]).toEqual([String(mismatches), String(pending)]);
    // Numbers grouped: last month's tokens run into the hundred thousands.
    const tokensSum = page.locator('table.recon-rollups tr[data-meter="tokens"] td').nth(2);
    const sum = (await tokensSum.getAttribute('data-value'))!;
    expect(await tokensSum.textContent()).toBe(quantity(sum));
    expect(await tokensSum.textContent()).toMatch(/^\d{1,3}(,\d{3})+(\.\d+)?$/);
    await page.getByText('Stripe sync is off: set STRIPE_API_KEY').waitFor();
    const stripe = await api<{ enabled: boolean; mismatches: unknown[]; message: string }>('/api/v1/billing/stripe/reconcile', rt.adminKey);
    expect(stripe.status).toBe(200);
    expect(stripe.body).toMatchObject({ enabled: false, mismatches: [] });
    expect(stripe.body.message).toMatch(/STRIPE_API_KEY/);
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
        // Shown grouped (or as is): the digits are the API's.
        expect((await row.locator(`td[data-meter="${u.meter}"]`).textContent())?.replace(/,/g, '')).toBe(u.value);
      }
      expect(await row.locator('td[data-col="projected"]').getAttribute('data-value')).toBe(item.projected!.projectedTotal);
    }
    // Money in the customer's currency.
    expect(await page.locator('tr[data-customer="globex"] td[data-col="projected"]').textContent()).toMatch(EUR);
    expect(await page.locator('tr[data-customer="acme"] td[data-col="projected"]').textContent()).toMatch(USD);
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
        expect(shown).toEqual([['', fromApi[0]!.value, quantity(fromApi[0]!.value)]]);
        expect(Number(fromApi[0]!.value)).toBeGreaterThan(0);
      } else {
        const expected = fromApi.map((r) => [r.groupBy[groupBy]!, r.value, quantity(r.value)]).sort((a, b) => a[0]!.localeCompare(b[0]!));
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
    expect(await d.locator(`tr[data-line="${usageLine.id}"] td`).nth(1).textContent()).toBe(quantity(usageLine.quantity));
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
    await reconciliation(page);
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
    const projectedNow = async () => (await api<{ subscriptions: { projectedTotal: string }[] }>('/api/v1/portal/projected-invoice', token)).body.subscriptions[0]!.projectedTotal;
    // The projection moves as the period elapses (same usage, a larger share of the period):
    // what the page shows lies between the API's answers just before and just after it loaded.
    const projectedBefore = await projectedNow();
    await page.goto(link.replace(/^https?:\/\/[^/]+/, base));
    await page.getByRole('heading', { level: 1, name: 'Your usage' }).waitFor();
    // The token left the address bar; the URL names the customer.
    expect(page.url()).not.toContain('mlp_');
    expect(page.url()).toContain('?customer=acme');
    const shownProjected = (await page.locator('[data-testid="portal-projected"]').getAttribute('data-value'))!;
    const projectedAfter = await projectedNow();
    expect(compareDecimal(shownProjected, projectedAfter), `${shownProjected} >= ${projectedAfter}`).toBeGreaterThanOrEqual(0);
    expect(compareDecimal(shownProjected, projectedBefore), `${shownProjected} <= ${projectedBefore}`).toBeLessThanOrEqual(0);
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

  /** Money cells of a table (labelled "Amount", "Amount so far", "Projected amount"), with a value. */
  const amountTexts = (scope: Locator) => scope.locator('td[data-label*="mount"]:not([data-value=""])').allTextContents();

  for (const [device, viewport] of [['desktop', DESKTOP], ['phone', PHONE]] as const) {
    it(`${device}, ${viewport.width} px: numbers read well, every page fits, charts are whole, nothing fails with Stripe off`, async () => {
      const { ctx, page, problems } = await signedIn(rt.adminKey, viewport);
      const phone = device === 'phone';

      await page.goto(`${base}/ui/#/accounts`);
      await page.locator('table.accounts tbody tr').first().waitFor();
      await fitsViewport(page, 'accounts');
      await notClipped(page.locator('table.accounts td[data-col="projected"]'), 'accounts: projected');
      expect(await page.locator('tr[data-customer="acme"] td[data-col="projected"]').textContent()).toMatch(USD);

      // Acme: millions of tokens, a projection, last month's invoice with tiers.
      await page.goto(`${base}/ui/#/accounts/acme`);
      await page.getByRole('heading', { level: 1, name: 'Acme Corp' }).waitFor();
      const tokensSoFar = page.locator('dl.stats dd[data-meter="tokens"]');
      await tokensSoFar.waitFor();
      expect(await tokensSoFar.textContent()).toBe(quantity((await tokensSoFar.getAttribute('data-value'))!));
      expect(await tokensSoFar.textContent()).toMatch(/^\d{1,3}(,\d{3}){2,}(\.\d+)?$/);
      const projected = page.locator('.projected');
      await projected.locator('table.lines').waitFor();
      const total = page.locator('[data-testid="projected-total"]');
      expect(await total.textContent()).toBe(money((await total.getAttribute('data-value'))!, 'USD'));
      expect(await total.textContent()).toMatch(USD);
      expect(await total.textContent(), 'a projected total in the thousands is grouped').toContain(',');
      // Projected quantities: rounded to at most 2 places and grouped (the exact value stays in data-value).
      const projectedQty = await projected.locator('td[data-label="Projected quantity"]:not([data-value=""])').evaluateAll((tds) => tds.map((td) => [td.getAttribute('data-value')!, td.textContent!]));
      expect(projectedQty.length).toBeGreaterThan(1);
      for (const [value, text] of projectedQty) {
        expect(text).toBe(quantity(value!, 2));
        expect(text).toMatch(/^-?\d{1,3}(,\d{3})*(\.\d{1,2})?$/);
      }
      const projectedAmounts = await amountTexts(projected);
      expect(projectedAmounts.length).toBeGreaterThan(2);
      for (const t of projectedAmounts) expect(t).toMatch(USD);
      // The charts' y axes: whole labels, grouped (tokens per hour run into the millions).
      const tokenLabels = await yAxisWhole(page.locator('article.meter[data-meter="tokens"]'), 'tokens chart');
      expect(tokenLabels.some((l) => /^\d{1,3}(,\d{3})+$/.test(l)), tokenLabels.join(' ')).toBe(true);
      for (const m of ['api-calls', 'active-users']) await yAxisWhole(page.locator(`article.meter[data-meter="${m}"]`), `${m} chart`);
      const inv = seeded.invoices.acme!;
      const d = page.locator(`details[data-invoice="${inv.id}"]`);
      await d.locator('summary').click();
      await d.locator('table.lines').waitFor();
      expect(await d.locator('tfoot td[data-total]').textContent()).toBe(money(inv.total, 'USD'));
      for (const t of await amountTexts(d)) expect(t).toMatch(USD);
      const tokensLine = inv.lines.find((l) => l.kind === 'usage' && l.meter === 'tokens')!;
      expect(await d.locator(`tr[data-line="${tokensLine.id}"] td[data-label="Quantity"]`).textContent()).toBe(quantity(tokensLine.quantity));
      await notClipped(page.locator('.projected td[data-value]:not([data-value=""]), [data-testid="projected-total"], details[data-invoice] td[data-label="Amount"]'), 'acme amounts');
      await fitsViewport(page, 'account');
      if (phone) {
        await page.evaluate('window.scrollTo(0, 0)');
        await shot(page, 'account-phone');
      }

      // Initech moved to Scale mid-month: its proration line names the day, not an ISO timestamp.
      await page.goto(`${base}/ui/#/accounts/initech`);
      await page.getByRole('heading', { level: 1, name: 'Initech' }).waitFor();
      const initech = seeded.invoices.initech!;
      const proration = initech.lines.find((l) => l.kind === 'proration');
      expect(proration, 'the seed changes Initech’s plan mid-month').toBeDefined();
      const di = page.locator(`details[data-invoice="${initech.id}"]`);
      await di.locator('summary').click();
      await di.locator('table.lines').waitFor();
      const descriptions = await di.locator('table.lines > tbody > tr[data-line] > td:first-child').allTextContents();
      expect(descriptions.length).toBe(initech.lines.length);
      for (const t of descriptions) expect(t).not.toMatch(ISO_TIME);
      expect(await di.locator(`tr[data-line="${proration!.id}"] > td`).first().textContent()).toMatch(/^Remaining time on Scale from [A-Z][a-z]{2} \d{1,2}, \d{4}$/);
      for (const t of await amountTexts(di)) expect(t).toMatch(USD);
      await fitsViewport(page, 'account with a plan change');

      await reconciliation(page);
      await fitsViewport(page, 'reconciliation');
      if (phone) await shot(page, 'reconciliation-phone');

      await page.goto(`${base}/ui/#/dead-letters`);
      await page.locator('table.dead-letters tbody tr').first().waitFor();
      await fitsViewport(page, 'dead letters');
      if (phone) await shot(page, 'dead-letters-phone');


      // The portal, as Acme sees it.
      const created = await api<{ token: string }>('/api/v1/portal-tokens', rt.adminKey, { method: 'POST', body: JSON.stringify({ customer: 'acme' }) });
      expect(created.status).toBe(201);
      const portal = await ctx.newPage();
      const portalProblems = watch(portal);
      await portal.goto(`${base}/ui/portal/#token=${created.body.token}`);
      await portal.getByRole('heading', { level: 1, name: 'Your usage' }).waitFor();
      const portalTotal = portal.locator('[data-testid="portal-projected"]');
      expect(await portalTotal.textContent()).toBe(money((await portalTotal.getAttribute('data-value'))!, 'USD'));
      expect(await portalTotal.textContent()).toMatch(USD);
      expect(await portal.locator('dl.stats dd[data-meter="tokens"]').textContent()).toMatch(GROUPED);
      await portal.locator('.projected table.lines').waitFor();
      for (const t of await amountTexts(portal.locator('.projected'))) expect(t).toMatch(USD);
      await yAxisWhole(portal.locator('article.meter[data-meter="tokens"]'), 'portal tokens chart');
      await notClipped(portal.locator('.projected td[data-value]:not([data-value=""]), [data-testid="portal-projected"]'), 'portal amounts');
      await fitsViewport(portal, 'portal');
      if (phone) await shot(portal, 'portal-phone');
      expect(portalProblems).toEqual([]);

      await page.goto(`${base}/ui/#/catalog`);
      await page.locator('tr[data-plan="pro"]').waitFor();
      await fitsViewport(page, 'catalog');
      if (phone) await shot(page, 'catalog-phone');
      expect(problems).toEqual([]);
      await ctx.close();
    });
  }
});
