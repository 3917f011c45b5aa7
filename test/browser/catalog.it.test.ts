import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import type { NatsServerHandle } from '../../common/nats-server.ts';
import type { InvoicePreviews, PlanView, Subscription } from '../../rater/index.ts';
import { client, total } from '../api-client.ts';
import { ce, eventually, startTestNats, startTestRuntime, testConfig, type TestRuntime } from '../harness.ts';
import { launchChromium } from './browser.ts';

/**
 * Catalog editing in the dashboard, as a finance user: a meter, a plan, a subscription, a new
 * plan version previewed and published, the subscription migrated, and a charged meter's
 * deletion refused; every number shown checked against what the API (the rater) computes.
 */
const DESKTOP = { width: 1366, height: 900 };
const PHONE = { width: 390, height: 844 };
const HOUR = 3_600_000;

describe('catalog editing in the dashboard', () => {
  let chromium: Awaited<ReturnType<typeof launchChromium>>;
  let browser: Browser;
  let nats: NatsServerHandle;
  let rt: TestRuntime;
  let base = '';
  let financeKey = '';
  const now = Date.now();
  const monthStart = Date.UTC(new Date(now).getUTCFullYear(), new Date(now).getUTCMonth(), 1);
  const local = (ms: number) => new Date(ms).toISOString().slice(0, 16);

  beforeAll(async () => {
    chromium = await launchChromium();
    browser = chromium.browser;
    nats = await startTestNats();
    rt = await startTestRuntime(testConfig(nats.url, { INGEST_MAX_PAST: '60d', BILLING_SCHEDULE: '0 0 1 1 *', ANOMALY_SCHEDULE: '0 0 1 1 *' }));
    base = rt.url!.replace('0.0.0.0', '127.0.0.1');
    // Finance edits plans and subscriptions (billing) and meters (admin).
    financeKey = await rt.key('read', 'billing', 'admin');
    const r = await client(rt.app!, rt.adminKey).post('/api/v1/customers', { key: 'acme', name: 'Acme', currency: 'USD', timeZone: 'UTC' });
    expect(r.statusCode).toBe(201);
  }, 120_000);
  afterAll(async () => {
    await chromium?.close();
    await rt?.stop();
    await nats?.stop();
  });

  const signedIn = async (key: string, viewport = DESKTOP): Promise<Page> => {
    const ctx = await browser.newContext({ viewport });
    const page = await ctx.newPage();
    page.on('pageerror', (e) => {
      throw e;
    });
    await page.goto(`${base}/ui/`);
    await page.getByLabel('API key').fill(key);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('navigation', { name: 'Main' }).waitFor();
    await page.goto(`${base}/ui/#/catalog`);
    return page;
  };
  const api = () => client(rt.app!, rt.adminKey);
  const uiTotals = async (page: Page, form: string) => {
    const item = page.locator(`${form} [data-preview]`).first();
    await item.waitFor();
    return { before: await item.locator('[data-total="before"]').getAttribute('data-value'), after: await item.locator('[data-total="after"]').getAttribute('data-value'), difference: await item.locator('[data-difference]').getAttribute('data-difference') };
  };

  it('creates a meter, a plan and a subscription; publishes a previewed version; migrates; refuses deleting a charged meter', async () => {
    const page = await signedIn(financeKey);
    // A meter.
    await page.locator('summary', { hasText: /^New meter$/ }).first().click();
    const mf = page.locator('#meter-form');
    await mf.getByLabel('Slug').fill('calls');
    await mf.getByLabel('Name').fill('API calls');
    await mf.getByLabel('Event type').fill('call');
    await mf.getByLabel('Aggregation').selectOption('COUNT');
    await mf.getByRole('button', { name: 'Create meter' }).click();
    await page.locator('tr[data-meter="calls"]').waitFor();

    // Usage this month: 40 calls.
    const c = api();
    const from = Math.max(monthStart + 60_000, now - 2 * HOUR);
    expect((await c.ingest(Array.from({ length: 40 }, (_, i) => ce({ id: `c${i}`, type: 'call', subject: 'acme', time: new Date(from + i * 60_000).toISOString() })))).statusCode).toBe(202);
    await eventually(() => total(c, 'calls', 'acme'), (v) => v === '40');

    // A plan: a bad price first (the API's error at the charges field), then a good one.
    await page.locator('summary', { hasText: /^New plan$/ }).first().click();
    const pf = page.locator('#plan-form');
    await pf.getByLabel('Key').fill('std');
    await pf.getByLabel('Name').fill('Standard');
    await pf.getByLabel('Base fee', { exact: true }).fill('10');
    await pf.getByLabel('Charges').fill(JSON.stringify([{ key: 'calls', meter: 'calls', price: { model: 'graduated', tiers: [{ upTo: null, unitPrice: '0.1' }, { upTo: '5', unitPrice: '0.2' }] } }]));
    await pf.getByRole('button', { name: 'Create plan' }).click();
    const chargesError = pf.locator('[data-field="charges"] .field-error');
    await chargesError.waitFor();
    expect(await chargesError.textContent()).toMatch(/body\.charges\.0\.price/);
    await pf.getByLabel('Charges').fill(JSON.stringify([{ key: 'calls', meter: 'calls', price: { model: 'per_unit', unitPrice: '0.10' } }]));
    await pf.getByRole('button', { name: 'Create plan' }).click();
    await page.locator('tr[data-plan="std"]').waitFor();

    // Subscribe acme from the start of the month.
    await page.locator('summary', { hasText: /^Subscribe a customer$/ }).first().click();
    const sf = page.locator('#subscribe-form');
    await sf.getByLabel('Customer key').fill('acme');
    await sf.getByLabel('Start (UTC)').fill(local(monthStart));
    await sf.getByRole('button', { name: 'Subscribe' }).click();
    const subRow = page.locator('tr[data-subscription]');
    await subRow.waitFor();
    const subId = (await subRow.getAttribute('data-subscription'))!;
    expect(await subRow.locator('[data-phase]').getAttribute('data-phase')).toBe('std@v1');

    // A new version: preview it, compare with the API's preview, publish it.
    const planRow = page.locator('tr[data-plan="std"]');
    await planRow.locator('summary', { hasText: /^New version$/ }).first().click();
    const vf = page.locator('#version-form-std');
    await vf.getByLabel('Base fee', { exact: true }).fill('20');
    const v2Charges = [{ key: 'calls', meter: 'calls', price: { model: 'per_unit', unitPrice: '0.05' } }];
    await vf.getByLabel('Charges').fill(JSON.stringify(v2Charges));
    const effectiveFrom = local(now + 24 * HOUR);
    await vf.getByLabel('Effective from (UTC)').fill(effectiveFrom);
    await vf.getByRole('button', { name: 'Preview invoices' }).click();
    const shown = await uiTotals(page, '#version-form-std');
    const draft = { key: 'std', name: 'Standard', currency: 'USD', interval: 'month', baseFee: { amount: '20', timing: 'arrears' }, charges: v2Charges };
    const apiPreview = (await c.post('/api/v1/invoices/preview', { kind: 'plan-version', plan: draft, effectiveFrom: `${effectiveFrom}:00Z` })).json() as InvoicePreviews;
    expect(shown).toEqual({ before: apiPreview.items[0]!.before.total, after: apiPreview.items[0]!.after.total, difference: apiPreview.items[0]!.difference });
    // 10 + 40 × 0.10 now; 20 + 40 × 0.05 on the draft.
    expect(shown).toEqual({ before: '14.00', after: '22.00', difference: '8' });
    expect(((await c.get('/api/v1/plans/std')).json() as PlanView).latestVersion).toBe(1);
    await vf.getByRole('button', { name: 'Publish version' }).click();
    await eventually(async () => ((await c.get('/api/v1/plans/std')).json() as PlanView).latestVersion, (v) => v === 2);
    await page.locator('[data-versions="std"] [data-version="2"]').waitFor();

    // Migrate the subscription to version 2 from the start of the month (preview, then confirm).
    const row = page.locator(`tr[data-subscription="${subId}"]`);
    await row.locator('summary', { hasText: /^Change$/ }).first().click();
    const cf = page.locator(`#sub-edit-${subId}`);
    await cf.getByLabel('Effective at (UTC)').fill(local(monthStart));
    await cf.getByLabel('Version').selectOption('2');
    await cf.locator('[data-action="preview-migrate"]').click();
    expect(await uiTotals(page, `#sub-edit-${subId}`)).toEqual({ before: '14.00', after: '22.00', difference: '8' });
    await cf.locator('[data-action="migrate"]').click();
    await cf.locator('[data-confirm="migrate"]').click();
    await eventually(async () => ((await c.get(`/api/v1/subscriptions/${subId}`)).json() as Subscription).phases.map((p) => p.version), (v) => JSON.stringify(v) === '[2]');
    await page.locator(`tr[data-subscription="${subId}"] [data-phase="std@v2"]`).waitFor();
    // What the rater bills now: the invoice so far is on version 2.
    const after = (await c.post('/api/v1/invoices/preview', { kind: 'terms', subscription: subId })).json() as InvoicePreviews;
    expect(after.items[0]!.before.total).toBe('22.00');

    // Deleting the charged meter is refused, and the refusal is shown.
    const meterRow = page.locator('tr[data-meter="calls"]');
    await meterRow.locator('summary', { hasText: /^Edit$/ }).first().click();
    await meterRow.locator('[data-action="delete-meter"]').click();
    await meterRow.locator('[data-confirm="delete-meter"]').click();
    const refusal = meterRow.locator('.form-errors .note-error');
    await refusal.waitFor();
    expect(await refusal.textContent()).toMatch(/meter "calls" is charged for by plan "std" \(std v1 calls, std v2 calls\)/);
    expect((await c.get('/api/v1/meters/calls')).statusCode).toBe(200);
    await page.context().close();
  });

  it('fits a 390 px phone without sideways scrolling, and shows a read-only key no edit buttons', async () => {
    for (const [key, viewport] of [[financeKey, PHONE], [await rt.key('read', 'billing'), DESKTOP]] as const) {
      const page = await signedIn(key, viewport);
      await page.locator('tr[data-plan="std"]').waitFor();
      const r = await page.evaluate(() => {
        const g = globalThis as unknown as { document: { documentElement: { scrollWidth: number } }; innerWidth: number };
        return { scrollWidth: g.document.documentElement.scrollWidth, width: g.innerWidth };
      });
      expect(r.scrollWidth).toBeLessThanOrEqual(r.width);
      await page.context().close();
    }
    const page = await signedIn(await rt.key('read'));
    await page.locator('tr[data-meter="calls"]').waitFor();
    // Plans and subscriptions need the billing scope: the page says so; no editor is drawn.
    await page.getByText(/Your key cannot see this/).first().waitFor();
    expect(await page.locator('details.editor').count()).toBe(0);
    expect(await page.getByRole('button', { name: /Create|Publish|Migrate|Delete|Save/ }).count()).toBe(0);
    await page.context().close();
  });
});
