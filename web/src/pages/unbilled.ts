import type { Unbilled, UnbilledRow } from '../../../api/contracts.ts';
import { ApiError } from '../api.ts';
import type { Page } from '../context.ts';
import { badge, h, note, num, replace, section, table } from '../dom.ts';
import { money, period, previousMonth, quantity } from '../format.ts';

type Reason = UnbilledRow['reason'];

/** Each reason's heading and what it means, in the API's order (the first that applies wins). */
const REASONS: [Reason, string, string][] = [
  ['meter_not_priced', 'Meters no plan charges', 'No plan in the catalog charges these meters, so nobody can be billed for them: no price.'],
  ['unknown_subject', 'Unknown subjects', 'Events whose subject is no customer’s key.'],
  ['no_subscription', 'No subscription', 'Customers’ usage while no subscription covered it: before the start, after the end or cancel, between subscriptions.'],
  ['meter_not_in_plan', 'Meter not in the plan', 'A subscription covered the usage, but its plan did not charge the meter.'],
];
const LABEL = Object.fromEntries(REASONS.map(([r, label]) => [r, label])) as Record<Reason, string>;
const SOURCE = { subscription_plan: 'customer’s plan', catalog_lowest: 'lowest in catalog' } as const;

const amountCell = (amount: string | null, currency: string | null) => (amount === null || currency === null ? num('', 'no price', { 'data-unpriced': 'true' }) : num(amount, money(amount, currency), { 'data-currency': currency }));

/** When in the month the row's usage was: the whole month, or its parts (UTC). */
function when(r: UnbilledRow, body: Unbilled): string {
  if (r.ranges.length === 1 && r.ranges[0]!.start === body.from && r.ranges[0]!.end === body.to) return 'whole month';
  return r.ranges.map((x) => period(x.start, x.end, body.timeZone)).join('; ');
}

function rowsTable(rows: UnbilledRow[], body: Unbilled): HTMLElement {
  return table(
    ['Subject', 'Meter', 'Quantity', 'At list price', 'Price from', 'When'],
    rows.map((r) =>
      h(
        'tr',
        { 'data-reason': r.reason, 'data-subject': r.subject, 'data-meter': r.meter },
        h('th', { scope: 'row' }, r.customer ? h('a', { href: `#/accounts/${encodeURIComponent(r.customer)}` }, r.subject) : r.subject),
        h('td', {}, r.meter, h('div', { class: 'muted small' }, r.aggregation)),
        num(r.quantity, quantity(r.quantity), { title: r.quantity }),
        amountCell(r.amount, r.currency),
        h('td', { class: 'small' }, r.plan ? `${r.plan} / ${r.charge ?? ''}` : (r.note ?? '—'), r.priceSource ? h('div', { class: 'muted' }, SOURCE[r.priceSource]) : null),
        h('td', { class: 'small' }, when(r, body)),
      ),
    ),
    { class: 'unbilled-rows' },
  );
}

/** Totals per reason and currency, then per currency over every reason (both summed by the API, exactly). */
function totalsTable(body: Unbilled): HTMLElement {
  const rows = [
    ...body.totals.map((t) => h('tr', { 'data-total-reason': t.reason, 'data-currency': t.currency ?? '' }, h('th', { scope: 'row' }, LABEL[t.reason]), num(String(t.rows)), amountCell(t.amount, t.currency))),
    ...body.currencyTotals.map((t) => h('tr', { class: 'row-total', 'data-total-reason': 'all', 'data-currency': t.currency }, h('th', { scope: 'row' }, `All reasons (${t.currency})`), num(String(t.rows)), amountCell(t.amount, t.currency))),
  ];
  return table(['Reason', 'Rows', 'At list price'], rows, { class: 'unbilled-totals' });
}

/**
 * Unbilled usage (GET /api/v1/billing/unbilled): for a month, the usage no invoice bills,
 * grouped by reason, each row at list price, with totals per reason and currency. Finance's
 * view of revenue leakage; docs/unbilled.md explains the reasons and the list price.
 */
export const unbilledPage: Page = (ctx) => {
  ctx.title('Unbilled usage');
  const month = h('input', { id: 'unbilled-month', type: 'month', value: previousMonth(Date.now()), required: true });
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'toolbar', 'aria-label': 'Month' }, h('div', { class: 'field inline' }, h('label', { for: 'unbilled-month' }, 'Month'), month), h('button', { type: 'submit', class: 'btn primary' }, 'Show'));
  replace(
    ctx.main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Unbilled usage'), h('p', { class: 'muted' }, 'Usage no invoice bills, at list price: a calendar month in UTC.')),
    form,
    out,
  );

  const load = async () => {
    const m = month.value;
    if (!/^\d{4}-\d{2}$/.test(m)) return;
    replace(out, note('Loading…'));
    try {
      const body = await ctx.api.get<Unbilled>('/api/v1/billing/unbilled', { month: m });
      if (body.rows.length === 0) return replace(out, note(`No unbilled usage in ${m}: every unit of usage is on an invoice.`));
      replace(
        out,
        section('Totals', 'unbilled-totals', h('p', { class: 'muted small' }, 'Rounded per row to the currency, as an invoice line is; rows without a price are counted, not summed.'), totalsTable(body)),
        REASONS.filter(([r]) => body.rows.some((x) => x.reason === r)).map(([r, label, why]) =>
          section(label, `unbilled-${r}`, h('p', { class: 'muted small' }, badge(String(body.rows.filter((x) => x.reason === r).length), 'muted'), ' ', why), rowsTable(body.rows.filter((x) => x.reason === r), body)),
        ),
      );
    } catch (err) {
      const forbidden = err instanceof ApiError && err.status === 403;
      replace(out, note(forbidden ? `Your key cannot see this (it needs the billing scope): ${(err as Error).message}.` : (err as Error).message, forbidden ? 'warn' : 'error'));
    }
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void load();
  });
  void load();
};
