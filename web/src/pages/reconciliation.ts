import { ApiError } from '../api.ts';
import type { Page } from '../context.ts';
import { amount, qty } from '../components.ts';
import { badge, h, note, num, replace, section, table } from '../dom.ts';
import { monthRange, period, previousMonth, quantity } from '../format.ts';
import type { Aggregates, ReconcileLine, StripeReconcile, UsageReconcile, UsageReconcileRow } from '../types.ts';

/** A ReconcileLine's per-event checks: each must be "0". */
const PER_EVENT = [
  ['rawDuplicates', 'duplicate raw events'],
  ['valueDuplicates', 'duplicate values'],
  ['missingValues', 'missing values'],
  ['orphanValues', 'values without event'],
  ['missingKeys', 'missing dedup keys'],
] as const;
const STATUS_BADGE: Record<UsageReconcileRow['status'], [string, string]> = { ok: ['ok', 'ok'], pending: ['pending correction', 'info'], mismatch: ['mismatch', 'bad'], not_additive: ['not additive', 'muted'] };
const accountLink = (customer: string) => h('a', { href: `#/accounts/${encodeURIComponent(customer)}` }, customer);

/** What the sections of one run found, for the summary above them. */
interface Tally {
  /** Rows flagged "mismatch": rollups, metered vs invoiced, Stripe. */
  mismatches: number;
  /** Metered more than invoiced, to be billed as a correction on the next invoice: not an error. */
  pending: number;
  /** Sections whose request failed: the summary cannot vouch for them. */
  failed: string[];
  stripeOff: boolean;
}

const plural = (n: number, one: string, many: string) => `${quantity(String(n))} ${n === 1 ? one : many}`;

/** One line that agrees with the rows below it: mismatches and pending corrections counted alike, failed sections named. */
function summaryNote(month: string, t: Tally): HTMLElement {
  const parts = [plural(t.mismatches, 'mismatch', 'mismatches'), `${quantity(String(t.pending))} pending correction`];
  const tail = [t.failed.length ? `could not check: ${t.failed.join(', ')}` : '', t.stripeOff ? 'Stripe not checked (sync is off)' : ''].filter(Boolean);
  const text = `${month}: ${parts.join(', ')}${tail.length ? ` · ${tail.join(' · ')}` : ''}.${t.mismatches ? ' See the flagged rows.' : ''}${t.pending ? ' Pending rows are usage that arrived after the invoice was finalized; it is billed as a correction on the next invoice.' : ''}`;
  const el = note(text, t.mismatches || t.failed.length ? 'warn' : 'info');
  el.id = 'recon-summary';
  el.dataset.mismatches = String(t.mismatches);
  el.dataset.pending = String(t.pending);
  return el;
}

/**
 * For a month: raw events vs per-event values vs each rollup (GET /api/v1/reconcile), metered
 * vs invoiced usage per invoice and meter (GET /api/v1/billing/usage-reconcile), the finance
 * aggregates, and Stripe's totals when Stripe sync is on. Every mismatch is flagged and links
 * to its account.
 */
export const reconciliationPage: Page = (ctx) => {
  ctx.title('Reconciliation');
  const month = h('input', { id: 'recon-month', type: 'month', value: previousMonth(Date.now()), required: true });
  const summary = h('div', { 'aria-live': 'polite' });
  const rollupsEl = h('div', {});
  const usageEl = h('div', {});
  const aggEl = h('div', {});
  const stripeEl = h('div', {});
  const run = h('button', { type: 'submit', class: 'btn primary' }, 'Reconcile');
  const form = h('form', { class: 'toolbar', 'aria-label': 'Period' }, h('div', { class: 'field inline' }, h('label', { for: 'recon-month' }, 'Month'), month), run);
  replace(
    ctx.main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Reconciliation'), h('p', { class: 'muted' }, 'Raw events, rollups, invoiced quantities and Stripe, for one month.')),
    form,
    summary,
    section('Rollups vs raw events', 'rollups', h('p', { class: 'muted small' }, 'Per meter, whole UTC days: per-event values against the minute, hour and day rollups and the raw events they come from.'), rollupsEl),
    section('Metered vs invoiced', 'metered', h('p', { class: 'muted small' }, 'Per finalized invoice whose period starts in the month: usage stored now (+ usage corrections) against usage lines + corrections billed later.'), usageEl),
    section('Invoiced (finance aggregates)', 'aggregates', h('p', { class: 'muted small' }, 'GET /api/v1/billing/aggregates: invoice lines of invoices whose period starts in the month in UTC (a period starting at midnight east of UTC counts in the month before).'), aggEl),
    section('Stripe', 'stripe', stripeEl),
  );

  const fail = (el: HTMLElement, err: unknown, what: string, t: Tally) => {
    t.failed.push(what);
    replace(el, note(err instanceof ApiError && err.status === 403 ? `Your key cannot see this: ${err.message}.` : (err as Error).message, err instanceof ApiError && err.status === 403 ? 'warn' : 'error'));
  };

  const load = async () => {
    const m = month.value;
    if (!/^\d{4}-\d{2}$/.test(m)) return;
    const { from, to } = monthRange(m);
    for (const el of [rollupsEl, usageEl, aggEl, stripeEl]) replace(el, note('Loading…'));
    replace(summary, note(`Checking ${m}…`));
    const t: Tally = { mismatches: 0, pending: 0, failed: [], stripeOff: false };
    const rollups = ctx.api.get<{ ok: boolean; meters: ReconcileLine[] }>('/api/v1/reconcile', { from, to }).then(
      (r) => {
        t.mismatches += r.meters.filter((l) => !l.ok).length;
        replace(
          rollupsEl,
          r.meters.length === 0
            ? note('No meters.')
            : table(
                ['Meter', 'Raw events', 'Values (count)', 'Values (sum)', 'Minute rollup', 'Hour rollup', 'Day rollup', 'Uncounted', 'Per event', 'Status'],
                r.meters.map((l) => {
                  const roll = (t: keyof ReconcileLine['rollups']) => {
                    const x = l.rollups[t];
                    const same = x.count === l.values.count && x.sum === l.values.sum;
                    return h('td', { class: `num ${same ? '' : 'cell-bad'}`, 'data-value': `${x.count}/${x.sum}` }, `${quantity(x.count)} / ${quantity(x.sum)}`);
                  };
                  const wrong = PER_EVENT.filter(([k]) => l[k] !== '0').map(([k, label]) => `${l[k]} ${label}`);
                  const perEvent = h('td', { class: wrong.length ? 'cell-bad' : '', 'data-per-event': wrong.length ? 'bad' : 'ok' }, wrong.length ? wrong.join(', ') : 'exact');
                  return h('tr', { 'data-meter': l.meter, 'data-ok': String(l.ok) }, h('th', { scope: 'row' }, l.meter), qty(l.rawEvents), qty(l.values.count), qty(l.values.sum), roll('meter_usage_1m_v2'), roll('meter_usage_1h_v2'), roll('meter_usage_1d_v2'), qty(l.uncounted), perEvent, h('td', {}, badge(l.ok ? 'ok' : 'mismatch', l.ok ? 'ok' : 'bad')));
                }),
                { class: 'recon-rollups' },
              ),
        );
      },
      (err: unknown) => fail(rollupsEl, err, 'rollups', t),
    );
    const usage = ctx.api.get<UsageReconcile>('/api/v1/billing/usage-reconcile', { period: m }).then(
      (r) => {
        t.mismatches += r.rows.filter((x) => x.status === 'mismatch').length;
        t.pending += r.rows.filter((x) => x.status === 'pending').length;
        replace(
          usageEl,
          r.rows.length === 0
            ? note(`No finalized invoices with a period starting in ${m}.`)
            : table(
                ['Account', 'Invoice', 'Meter', 'Metered', 'Usage corrections', 'Invoiced', 'Corrected later', 'Difference', 'Status'],
                r.rows.map((x) => {
                  const [label, kind] = STATUS_BADGE[x.status];
                  return h(
                    'tr',
                    { 'data-customer': x.customer, 'data-meter': x.meter, 'data-status': x.status, class: x.status === 'mismatch' ? 'row-bad' : '' },
                    h('th', { scope: 'row' }, accountLink(x.customer)),
                    h('td', {}, x.number ?? x.invoiceId, h('div', { class: 'muted small' }, period(x.periodStart, x.periodEnd, x.timeZone))),
                    h('td', {}, x.meter),
                    x.metered === null ? num('', '—') : qty(x.metered),
                    qty(x.usageCorrections),
                    qty(x.invoiced),
                    qty(x.corrected),
                    x.difference === null ? num('', '—') : qty(x.difference),
                    h('td', {}, badge(label, kind)),
                  );
                }),
                { class: 'recon-usage' },
              ),
        );
      },
      (err: unknown) => fail(usageEl, err, 'metered vs invoiced', t),
    );
    const agg = ctx.api.get<Aggregates>('/api/v1/billing/aggregates', { period: m }).then(
      (r) =>
        replace(
          aggEl,
          r.rows.length === 0
            ? note('Nothing invoiced for this month.')
            : table(
                ['Account', 'Meter', 'Kind', 'Quantity', 'Amount'],
                r.rows.map((x) => h('tr', { 'data-customer': x.customer }, h('th', { scope: 'row' }, accountLink(x.customer)), h('td', {}, x.meter || '—'), h('td', {}, x.kind.replace('_', ' ')), qty(x.quantity), amount(x.amount, x.currency))),
              ),
        ),
      (err: unknown) => fail(aggEl, err, 'aggregates', t),
    );
    const stripe = ctx.api.get<StripeReconcile>('/api/v1/billing/stripe/reconcile').then(
      (r) => {
        t.mismatches += r.mismatches.length;
        t.stripeOff = !r.enabled;
        if (!r.enabled) return replace(stripeEl, note(r.message ?? 'Stripe sync is off: set STRIPE_API_KEY to push finalized invoices to Stripe and reconcile them.'));
        replace(
          stripeEl,
          r.mismatches.length === 0
            ? note('Every synced invoice matches Stripe.')
            : table(
                ['Invoice', 'Account', 'Difference (minor units)', 'Details'],
                // The server's row names no customer (rater's ReconcileRow): the Account cell stays empty, as it always was.
                r.mismatches.map((x) => h('tr', { class: 'row-bad' }, h('td', {}, x.meterlineInvoiceId), h('td', {}, '—'), x.differenceMinor ? qty(x.differenceMinor) : num('', '—'), h('td', { class: 'mono small' }, JSON.stringify(x)))),
              ),
        );
      },
      (err: unknown) => fail(stripeEl, err, 'Stripe', t),
    );
    await Promise.all([rollups, usage, agg, stripe]);
    replace(summary, summaryNote(m, t));
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void load();
  });
  void load();
};
