import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { dryRunInvoice, parseScenario, runInvoiceDryRun, SCENARIO_HELP } from './invoice-dry-run.ts';

const dir = path.join(import.meta.dirname, '..', 'docs', 'scenarios');
const scenario = (f: string) => path.join(dir, f);
/** The printed total line, e.g. "154.84 EUR". */
const printedTotal = (text: string) => /^Total\s+(\S+ [A-Z]{3})$/m.exec(text)?.[1];
const lines = (text: string) => text.split('\n');

describe('meterline invoice --dry-run: the documented vendor scenarios in docs/scenarios/', () => {
  it.each([
    // Stripe: −5.00 unused on Basic + 10.00 remaining on Premium ("an additional 5 USD") + May in advance on Premium 20.00 = 25.00
    ['stripe-proration-upgrade.json', '25.00 USD'],
    // Lago: Plan A 14/31 × 100 = 45.16; Plan B 17/31 × 200 = 109.68; usage 40,000 × 0.001 = 40.00 → 194.84
    ['lago-upgrade-days.json', '194.84 EUR'],
    // Lago: usage 80,000 × 0.01 = 800.00 + true-up 1,000 − 800 = 200.00 → 1,000.00
    ['lago-minimum-commitment.json', '1000.00 USD'],
    // Lago: 5,000 × 0.010 = 50 raised to the spending minimum 100 → 100.00
    ['lago-spending-minimum.json', '100.00 USD'],
    // OpenMeter: seats 0 → minimum 100.00; builds 12 × 10 = 120 → capped 100.00; 10% off 200.00 = −20.00 → 180.00
    ['openmeter-minimum-maximum.json', '180.00 USD'],
    // Fireworks: 83.00 of usage − 20.00 of credits = 63.00
    ['prepaid-credits.json', '63.00 USD'],
    // Lago: 30.00 of usage − 2.50 goodwill − 27.50 from the wallet = 0.00
    ['lago-wallet.json', '0.00 USD'],
  ])('%s totals %s', async (file, total) => {
    const text = await runInvoiceDryRun(scenario(file));
    expect(printedTotal(text)).toBe(total);
    const json = JSON.parse(await runInvoiceDryRun(scenario(file), { json: true })) as { invoice: { total: string; currency: string; lines: { amount: string }[] } };
    expect(`${json.invoice.total} ${json.invoice.currency}`).toBe(total);
    // Every line printed with its amount, and the total is the sum of the rounded lines.
    const sum = json.invoice.lines.reduce((a, l) => a + Math.round(Number(l.amount) * 100), 0);
    expect((sum / 100).toFixed(2)).toBe(json.invoice.total);
  });

  it('every scenario in docs/scenarios/ is one of the tested ones', () => {
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort()).toEqual(
      ['lago-minimum-commitment.json', 'lago-spending-minimum.json', 'lago-upgrade-days.json', 'lago-wallet.json', 'openmeter-minimum-maximum.json', 'prepaid-credits.json', 'stripe-proration-upgrade.json'].sort(),
    );
  });

  it("prints every line with its breakdown: Lago's upgrade by days", async () => {
    const text = await runInvoiceDryRun(scenario('lago-upgrade-days.json'));
    expect(lines(text).slice(0, 12)).toEqual([
      'Invoice dry run for lumen, EUR',
      'Period 2026-01-01 00:00 – 2026-02-01 00:00 Europe/Paris (2025-12-31T23:00:00.000Z – 2026-01-31T23:00:00.000Z)',
      '',
      'Plan A base fee (prorated)                                 45.16',
      '    for 2026-01-01 00:00 – 2026-01-15 18:30',
      '    · prorated 45.1613% of the period (0.45161290322580645161 × 100): 45.161290322580645161',
      'Plan B base fee (prorated)                                109.68',
      '    for 2026-01-15 18:30 – 2026-02-01 00:00',
      '    · prorated 54.8387% of the period (0.54838709677419354839 × 200): 109.677419354838709678',
      'api (Plan A)                                               40.00',
      '    · 40000 × 0.001: 40',
      '',
    ]);
  });

  it('shows the minimum and maximum spend as their own rows of the charge', async () => {
    const text = await runInvoiceDryRun(scenario('openmeter-minimum-maximum.json'));
    expect(text).toContain('    · Minimum spend 100: the charge came to 0, raised to the minimum: 100\n');
    expect(text).toContain('    · Maximum spend 100: the charge came to 120, capped at the maximum: -20\n');
  });
});

const base = {
  customer: { key: 'acme', name: 'Acme', currency: 'USD', timeZone: 'UTC' },
  plans: [
    { key: 'small', name: 'Small', currency: 'USD', interval: 'month', charges: [{ key: 'api', meter: 'calls', price: { model: 'per_unit', unitPrice: '0.01' } }] },
    { key: 'large', name: 'Large', currency: 'USD', interval: 'month', charges: [{ key: 'api', meter: 'calls', price: { model: 'per_unit', unitPrice: '0.005' } }] },
  ],
  subscription: { phases: [{ plan: 'small', start: '2026-03-01T00:00:00Z' }] },
};

describe('scenarios', () => {
  it('a plan change splits timed events between the two prices', async () => {
    const s = await parseScenario({
      ...base,
      subscription: { phases: [{ plan: 'small', start: '2026-03-01T00:00:00Z' }, { plan: 'large', start: '2026-03-16T00:00:00Z' }] },
      usage: { calls: { events: [{ time: '2026-03-02T00:00:00Z', value: '1000' }, { time: '2026-03-20T00:00:00Z', value: '1000' }, { time: '2026-04-02T00:00:00Z', value: '9' }, { time: '2026-03-21T00:00:00Z' }] } },
    });
    const r = await dryRunInvoice(s);
    // small: 1000 × 0.01 = 10.00; large: 1001 × 0.005 = 5.005 → 5.01 (half-up, once per line)
    expect(r.invoice.lines.map((l) => [l.description, l.quantity, l.amount])).toEqual([
      ['api (Small)', '1000', '10.00'],
      ['api (Large)', '1001', '5.01'],
    ]);
    expect(r.invoice.total).toBe('15.01');
    expect(r.notes).toEqual(['usage.calls: 1 event(s) fall outside this period (or the time its charges were in force) and are not on this invoice']);
  });

  it('a total cannot be split across a plan change: it asks for events', async () => {
    const s = await parseScenario({ ...base, subscription: { phases: [{ plan: 'small', start: '2026-03-01T00:00:00Z' }, { plan: 'large', start: '2026-03-16T00:00:00Z' }] }, usage: { calls: { total: '5' } } });
    await expect(dryRunInvoice(s)).rejects.toThrow(/usage\.calls: meter "calls" is priced by more than one price in this period \(a plan change\): give its usage as events with times/);
  });

  it('prices per dimension from the events, naming an event without the dimension', async () => {
    const dim = { model: 'dimensional', dimension: 'model', prices: { 'gpt-4o': { model: 'per_unit', unitPrice: '0.0025' } }, default: { model: 'per_unit', unitPrice: '0.001' } };
    const plans = [{ ...base.plans[0], charges: [{ key: 'tokens', meter: 'tokens', price: dim }] }];
    const events = [{ time: '2026-03-02T00:00:00Z', value: '1000', dimensions: { model: 'gpt-4o' } }, { time: '2026-03-03T00:00:00Z', value: '500', dimensions: { model: 'o3' } }];
    // 1000 × 0.0025 + 500 × 0.001 = 2.5 + 0.5 = 3.00
    expect((await dryRunInvoice(await parseScenario({ ...base, plans, usage: { tokens: { events } } }))).invoice.total).toBe('3.00');
    await expect(dryRunInvoice(await parseScenario({ ...base, plans, usage: { tokens: { events: [{ time: '2026-03-02T00:00:00Z' }] } } }))).rejects.toThrow('usage.tokens.events[0].dimensions.model: is required: charge "tokens" is priced per model');
  });

  it('names every field that is wrong, and why', async () => {
    const bad = {
      ...base,
      customer: { ...base.customer, timeZone: 'Mars/Olympus' },
      plans: [{ ...base.plans[0], currency: 'EUR', charges: [{ key: 'api', meter: 'calls', price: { model: 'per_unit', unitPrice: '-1' } }] }],
      subscription: { phases: [{ plan: 'medium', start: 'yesterday' }] },
      usage: { calls: { total: 0.5, events: [] } },
      credits: [{ id: 'x', amount: '-5' }],
    };
    await expect(parseScenario(bad)).rejects.toThrow(
      expect.objectContaining({
        issues: expect.arrayContaining([
          { path: 'customer.timeZone', message: 'must be an IANA time zone such as Europe/Berlin' },
          { path: 'plans[0].charges[0].price.unitPrice', message: 'must not be negative (got -1)' },
          { path: 'subscription.phases[0].start', message: 'must be an RFC 3339 date-time such as 2026-01-15T00:00:00Z' },
          { path: 'usage.calls.total', message: 'write 0.5 as a decimal string, e.g. "0.5": a fractional JSON number may already have lost precision' },
          { path: 'credits[0].amount', message: '"-5" is not a non-negative decimal (expected e.g. "12.5")' },
        ]),
      }),
    );
    await expect(parseScenario({ ...base, subscription: { phases: [{ plan: 'medium', start: '2026-03-01T00:00:00Z' }] } })).rejects.toThrow('subscription.phases[0].plan: no plan "medium" in plans (have: small, large)');
    await expect(parseScenario({ ...base, plans: [{ ...base.plans[0], currency: 'EUR' }] })).rejects.toThrow("plans[0].currency: must be the customer's currency (USD): an invoice has one currency");
    await expect(parseScenario({ ...base, usage: { calls: { total: '1', events: [] } } })).rejects.toThrow('usage.calls: give exactly one of total, values, byDimension or events');
    await expect(parseScenario({ ...base, extra: 1 })).rejects.toThrow('extra: is not a field here');
  });

  it('the file errors say which file and what is wrong with it', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dry-run-'));
    const f = path.join(tmp, 'broken.json');
    fs.writeFileSync(f, '{ "customer": ');
    await expect(runInvoiceDryRun(f)).rejects.toThrow(`${f} is not valid JSON`);
    await expect(runInvoiceDryRun(path.join(tmp, 'missing.json'))).rejects.toThrow(/^cannot read .*missing\.json/);
    fs.writeFileSync(f, '{}');
    await expect(runInvoiceDryRun(f)).rejects.toThrow(`${f}: invalid scenario (3 problems):\n  - customer: is required\n  - plans: is required\n  - subscription: is required`);
    fs.rmSync(tmp, { recursive: true });
  });

  it('--help explains every part of the scenario format', () => {
    for (const field of ['"customer"', '"plans"', '"subscription"', '"phases"', '"period"', '"usage"', '"total"', '"values"', '"byDimension"', '"events"', '"adjustments"', '"credits"', '"discounts"', 'proration: second|day', 'docs/scenarios']) {
      expect(SCENARIO_HELP).toContain(field);
    }
  });
});
