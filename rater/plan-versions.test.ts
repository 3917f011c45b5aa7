import { describe, expect, it } from 'vitest';
import { MeterInputSchema, type Meter } from '../meter/index.ts';
import { changePlan, type Customer, type Plan, type PlanInput, type Subscription } from './catalog.ts';
import { appendVersion, billingSnapshot, chargesOfMeter, planView, versionAt, versionsOf } from './plan-versions.ts';
import { memoryBilling } from './test-fakes.ts';

const T = (s: string) => Date.parse(s);
const iso = (ms: number) => new Date(ms).toISOString();
const DAY = 86_400_000;
const SEP = T('2026-09-01T00:00:00Z');
const OCT = T('2026-10-01T00:00:00Z');
const NOV = T('2026-11-01T00:00:00Z');

const v1Input: PlanInput = { key: 'basic', name: 'Basic', currency: 'USD', interval: 'month', baseFee: { amount: '10', timing: 'arrears' }, charges: [{ key: 'calls', meter: 'calls', price: { model: 'per_unit', unitPrice: '0.10' } }] };
const v2Input: PlanInput = { ...v1Input, name: 'Basic 2026', baseFee: { amount: '20', timing: 'arrears' }, charges: [{ key: 'calls', meter: 'calls', price: { model: 'per_unit', unitPrice: '0.05' } }] };
/** A plan as stored before versions existed. */
const legacy: Plan = { ...v1Input, createdAt: '2026-01-01T00:00:00Z' };

function withV2(): Plan {
  const p = appendVersion(legacy, v2Input, OCT, '2026-09-20T00:00:00Z');
  if ('field' in p) throw new Error(p.reason);
  return p;
}

describe('plan versions (pure)', () => {
  it('a plan stored before versions is its own version 1', () => {
    expect(versionsOf(legacy)).toEqual([{ ...v1Input, version: 1, effectiveFrom: legacy.createdAt, createdAt: legacy.createdAt }]);
    expect(planView(legacy, OCT)).toMatchObject({ version: 1, latestVersion: 1, versions: [{ version: 1, name: 'Basic' }] });
  });

  it('appends a version; the latest definition is at the top, every version in versions', () => {
    const p = withV2();
    expect(p).toMatchObject({ version: 2, effectiveFrom: iso(OCT), baseFee: { amount: '20' }, name: 'Basic 2026' });
    expect(versionsOf(p).map((v) => [v.version, v.baseFee?.amount, v.effectiveFrom])).toEqual([
      [1, '10', legacy.createdAt],
      [2, '20', iso(OCT)],
    ]);
  });

  it.each([
    ['before version 2 (even before version 1 was created)', T('2025-06-01T00:00:00Z'), 1],
    ['the last instant before version 2', OCT - 1, 1],
    ['exactly at effectiveFrom', OCT, 2],
    ['after', NOV, 2],
  ])('a phase starting %s gets the version in force then', (_name, at, version) => {
    expect(versionAt(withV2(), at).version).toBe(version);
  });

  it('the API view shows the version in force now, not a future one', () => {
    expect(planView(withV2(), OCT - DAY)).toMatchObject({ version: 1, latestVersion: 2, baseFee: { amount: '10' } });
    expect(planView(withV2(), OCT)).toMatchObject({ version: 2, latestVersion: 2, baseFee: { amount: '20' } });
  });

  it.each([
    ['currency', { ...v2Input, currency: 'EUR' }, OCT, /share its currency \(USD\).*create a new plan priced in EUR/],
    ['interval', { ...v2Input, interval: 'year' as const }, OCT, /share its billing interval \(month\).*periods are cut from it/],
    ['effectiveFrom', v2Input, OCT, /after the latest version's \(2\) effectiveFrom/],
  ])('refuses a version changing %s, saying why', (field, input, at, reason) => {
    const r = appendVersion(withV2(), input, at, iso(SEP));
    expect(r).toMatchObject({ field, reason: expect.stringMatching(reason) });
  });

  it('resolves each phase to its pinned version; a phase stored without one is version 1', () => {
    const sub: Subscription = { id: 's', customer: 'c', anchor: iso(SEP), phases: [{ plan: 'basic', start: iso(SEP), end: iso(OCT) }, { plan: 'basic', version: 2, start: iso(OCT) }], createdAt: iso(SEP) };
    const snap = billingSnapshot(sub, { basic: withV2() }, (m) => new Error(m));
    expect(snap.subscription.phases.map((p) => p.plan)).toEqual(['basic@v1', 'basic@v2']);
    expect(snap.plans['basic@v1']!.baseFee!.amount).toBe('10');
    expect(snap.plans['basic@v2']!.baseFee!.amount).toBe('20');
    expect(() => billingSnapshot({ ...sub, phases: [{ plan: 'basic', version: 3, start: iso(SEP) }] }, { basic: withV2() }, (m) => new Error(m))).toThrow(/version 3 of plan "basic"/);
  });

  it('a migration is a plan change to another version of the same plan; the same version is refused', () => {
    const sub: Subscription = { id: 's', customer: 'c', anchor: iso(SEP), phases: [{ plan: 'basic', start: iso(SEP) }], createdAt: iso(SEP) };
    expect(changePlan(sub, { plan: 'basic', version: 2 }, OCT + 15 * DAY)).toMatchObject({ phases: [{ plan: 'basic', end: iso(OCT + 15 * DAY) }, { plan: 'basic', version: 2, start: iso(OCT + 15 * DAY) }] });
    expect(changePlan(sub, { plan: 'basic', version: 1 }, OCT)).toEqual({ error: 'the subscription is already on plan "basic" version 1' });
  });

  it('names the charges of any version that bill a meter', () => {
    const p = appendVersion(withV2(), { ...v2Input, charges: [] }, NOV, iso(OCT));
    if ('field' in p) throw new Error(p.reason);
    expect(chargesOfMeter(p, 'calls')).toEqual(['basic v1 calls', 'basic v2 calls']);
    expect(chargesOfMeter(p, 'tokens')).toEqual([]);
  });
});

const calls: Meter = { ...MeterInputSchema.parse({ slug: 'calls', eventType: 'api.call', aggregation: 'SUM', valueProperty: '$.n' }), id: 'm_calls', createdAt: '2026-01-01T00:00:00Z' };
const customer = (key: string): Customer => ({ key, name: key, currency: 'USD', timeZone: 'UTC', createdAt: '2026-01-01T00:00:00Z' });
const sub = (c: string, phases: Subscription['phases']): Subscription => ({ id: `sub_${c}`, customer: c, anchor: iso(SEP), phases, createdAt: iso(SEP) });
const lines = (inv: { lines: { kind: string; amount: string; quantity: string }[] }) => inv.lines.map((l) => [l.kind, l.quantity, l.amount]);

describe('billing with plan versions (in-memory stores)', () => {
  /** old: on v1 since September; new: started in October on v2; moved: v1, migrated to v2 on Oct 16. */
  function world() {
    const b = memoryBilling(
      {
        meters: { calls },
        customers: { old: customer('old'), new: customer('new'), moved: customer('moved') },
        plans: { basic: withV2() },
        subscriptions: {
          sub_old: sub('old', [{ plan: 'basic', start: iso(SEP) }]),
          sub_new: sub('new', [{ plan: 'basic', version: 2, start: iso(OCT) }]),
          sub_moved: sub('moved', [
            { plan: 'basic', start: iso(SEP), end: iso(OCT + 15 * DAY) },
            { plan: 'basic', version: 2, start: iso(OCT + 15 * DAY) },
          ]),
        },
      },
      DAY,
    );
    for (const c of ['old', 'new', 'moved']) {
      b.usage.rows.push({ meterId: calls.id, subject: c, timeMs: OCT + 2 * DAY, ingestedMs: OCT + 2 * DAY, value: '50' });
      b.usage.rows.push({ meterId: calls.id, subject: c, timeMs: OCT + 20 * DAY, ingestedMs: OCT + 20 * DAY, value: '50' });
    }
    return b;
  }

  it('closes October with each phase billed at its pinned version', async () => {
    const b = world();
    const r = await b.close.closeByHand('2026-10', { dryRun: false, nowMs: NOV + 2 * DAY });
    const by = Object.fromEntries(r.invoices.map((i) => [i.customer, i]));
    // v1: 10 base + 100 × 0.10.
    expect(lines(by.old!)).toEqual([['base_fee', '1', '10.00'], ['usage', '100', '10.00']]);
    expect(by.old!.total).toBe('20.00');
    // v2: 20 base + 100 × 0.05.
    expect(lines(by.new!)).toEqual([['base_fee', '1', '20.00'], ['usage', '100', '5.00']]);
    expect(by.new!.total).toBe('25.00');
    // 15 of 31 days on v1 (10 × 15/31 = 4.84), 16 on v2 (20 × 16/31 = 10.32); 50 calls at each price.
    expect(by.moved!.lines.filter((l) => l.kind === 'base_fee').map((l) => l.amount)).toEqual(['4.84', '10.32']);
    expect(by.moved!.lines.filter((l) => l.kind === 'usage').map((l) => [l.quantity, l.amount])).toEqual([['50', '5.00'], ['50', '2.50']]);
    expect(by.moved!.total).toBe('22.66');
    // The stored snapshot carries the versions, so a later correction prices the period as billed.
    const stored = (await b.invoices.finalized({ customer: 'moved' }))[0]!;
    expect(Object.keys(stored.snapshot.plans).sort()).toEqual(['basic@v1', 'basic@v2']);
  });

  it('publishing a version later changes no existing subscription', async () => {
    const b = world();
    const v3 = appendVersion(b.replicas.plans.get('basic')!, { ...v2Input, baseFee: { amount: '99', timing: 'arrears' } }, OCT + 10 * DAY, iso(OCT));
    if ('field' in v3) throw new Error(v3.reason);
    b.replicas.plans.map.set('basic', v3);
    const r = await b.close.closeByHand('2026-10', { dryRun: true, nowMs: NOV + 2 * DAY });
    expect(Object.fromEntries(r.invoices.map((i) => [i.customer, i.total]))).toEqual({ old: '20.00', new: '25.00', moved: '22.66' });
  });

  it('previews a draft version for its subscriptions, storing nothing', async () => {
    const b = world();
    const before = JSON.stringify([...b.replicas.plans.map, ...b.replicas.subscriptions.map]);
    const now = OCT + 25 * DAY;
    const draft = { ...v2Input, baseFee: { amount: '30', timing: 'arrears' as const } };
    const p = await b.preview.preview({ kind: 'plan-version', plan: draft, effectiveFrom: iso(NOV) }, now);
    const by = Object.fromEntries(p.items.map((i) => [i.subscription, i]));
    expect(Object.keys(by).sort()).toEqual(['sub_moved', 'sub_new', 'sub_old']);
    // old: before 20.00 (v1); after: the whole period on the draft: 30 + 100 × 0.05.
    expect([by.sub_old!.before.total, by.sub_old!.after.total, by.sub_old!.difference]).toEqual(['20.00', '35.00', '15']);
    expect([by.sub_new!.before.total, by.sub_new!.after.total]).toEqual(['25.00', '35.00']);
    expect(JSON.stringify([...b.replicas.plans.map, ...b.replicas.subscriptions.map])).toBe(before);
    expect(b.invoices.stored).toEqual([]);
  });

  it('previews a migration and terms with the rules of saving them', async () => {
    const b = world();
    const now = OCT + 25 * DAY;
    const m = await b.preview.preview({ kind: 'migrate', subscription: 'sub_old', version: 2, effectiveAt: iso(OCT) }, now);
    expect([m.items[0]!.before.total, m.items[0]!.after.total]).toEqual(['20.00', '25.00']);
    await expect(b.preview.preview({ kind: 'migrate', subscription: 'sub_old', version: 7, effectiveAt: iso(OCT) }, now)).rejects.toThrow('version: plan "basic" has no version 7');
    const t = await b.preview.preview({ kind: 'terms', subscription: 'sub_old', overrides: { baseFee: '5' }, discounts: [{ type: 'percent', value: '10' }] }, now);
    // 5 + 10.00 = 15.00, less 10 %.
    expect(t.items[0]!.after.total).toBe('13.50');
    await expect(b.preview.preview({ kind: 'plan-version', plan: { ...v2Input, currency: 'EUR' }, effectiveFrom: iso(NOV) }, now)).rejects.toThrow(/body\.plan\.currency: a plan's versions share its currency/);
  });
});
