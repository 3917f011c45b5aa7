import { ApiError } from '../api.ts';
import type { Page } from '../context.ts';
import { SEVERITY_KIND } from '../components.ts';
import { badge, h, note, num, replace } from '../dom.ts';
import { compareDecimal, money, period } from '../format.ts';
import type { Accounts, AccountSummary } from '../types.ts';

const POLL_MS = 5_000;

type SortKey = { kind: 'name' | 'plan' | 'projected' | 'alerts' } | { kind: 'meter'; meter: string };

/**
 * Every customer with usage so far this period, projected invoice and open anomalies: one
 * request (GET /api/v1/accounts), polled every few seconds while the tab is visible.
 */
export const accountsPage: Page = (ctx) => {
  ctx.title('Accounts');
  let items: AccountSummary[] = [];
  let asOf = '';
  let sort: SortKey = { kind: 'name' };
  let desc = false;
  const search = h('input', { id: 'account-search', type: 'search', placeholder: 'Name or key', autocomplete: 'off' });
  const status = h('p', { class: 'muted small', id: 'accounts-updated' });
  const body = h('div', {});
  replace(
    ctx.main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Accounts'), status),
    h('div', { class: 'toolbar' }, h('div', { class: 'field inline grow' }, h('label', { for: 'account-search' }, 'Search'), search)),
    body,
  );

  const value = (a: AccountSummary, k: SortKey): string => {
    if (k.kind === 'meter') return a.usage.find((u) => u.meter === k.meter)?.value ?? '0';
    if (k.kind === 'name') return a.customer.name.toLowerCase();
    if (k.kind === 'plan') return a.subscriptions[0]?.planName ?? '';
    if (k.kind === 'projected') return a.projected?.projectedTotal ?? '-1';
    return String(a.openAnomalies);
  };
  const numeric = (k: SortKey) => k.kind !== 'name' && k.kind !== 'plan';
  const sameKey = (a: SortKey, b: SortKey) => a.kind === b.kind && (a.kind !== 'meter' || (b.kind === 'meter' && a.meter === b.meter));

  const render = () => {
    const q = search.value.trim().toLowerCase();
    const shown = items
      .filter((a) => !q || a.customer.name.toLowerCase().includes(q) || a.customer.key.toLowerCase().includes(q))
      .sort((x, y) => {
        const c = numeric(sort) ? compareDecimal(value(x, sort), value(y, sort)) : value(x, sort).localeCompare(value(y, sort));
        return (desc ? -c : c) || x.customer.key.localeCompare(y.customer.key);
      });
    const meters = items[0]?.usage ?? [];
    const th = (label: string, k: SortKey, cls = '') => {
      const active = sameKey(sort, k);
      return h(
        'th',
        { scope: 'col', class: cls, 'aria-sort': active ? (desc ? 'descending' : 'ascending') : 'none' },
        h('button', {
          type: 'button',
          class: 'sort',
          onclick: () => {
            desc = active ? !desc : numeric(k);
            sort = k;
            render();
            (body.querySelector(`th[aria-sort]:not([aria-sort="none"]) button`) as HTMLButtonElement | null)?.focus();
          },
        }, label, h('span', { class: 'sort-ind', 'aria-hidden': 'true' }, active ? (desc ? ' ▼' : ' ▲') : '')),
      );
    };
    if (items.length === 0) return replace(body, note('No customers yet. Create one with POST /api/v1/customers.'));
    if (shown.length === 0) return replace(body, note(`No customer matches “${search.value}”.`));
    replace(
      body,
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'accounts', 'aria-describedby': 'accounts-updated' },
          h('thead', {}, h('tr', {}, th('Customer', { kind: 'name' }), th('Plan', { kind: 'plan' }), h('th', { scope: 'col' }, 'Period'), meters.map((m) => th(m.name, { kind: 'meter', meter: m.meter }, 'num')), th('Projected', { kind: 'projected' }, 'num'), th('Alerts', { kind: 'alerts' }, 'num'))),
          h(
            'tbody',
            {},
            shown.map((a) =>
              h(
                'tr',
                { 'data-customer': a.customer.key },
                h('th', { scope: 'row', 'data-label': 'Customer' }, h('a', { href: `#/accounts/${encodeURIComponent(a.customer.key)}` }, a.customer.name), h('div', { class: 'muted small' }, `${a.customer.key} · ${a.customer.currency}`)),
                h('td', { 'data-label': 'Plan' }, a.subscriptions.map((s) => s.planName).join(', ') || h('span', { class: 'muted' }, 'none')),
                h('td', { class: 'nowrap', 'data-label': 'Period' }, period(a.period.start, a.period.end, a.customer.timeZone)),
                a.usage.map((u) => num(u.value, u.value, { 'data-meter': u.meter, 'data-label': u.name })),
                a.projected ? num(a.projected.projectedTotal, money(a.projected.projectedTotal, a.projected.currency), { 'data-col': 'projected', 'data-label': 'Projected', title: `so far ${money(a.projected.amountSoFar, a.projected.currency)}` }) : h('td', { class: 'num muted', 'data-col': 'projected', 'data-label': 'Projected', title: a.projectedError ?? 'no subscription' }, '—'),
                h('td', { class: 'num', 'data-col': 'alerts', 'data-label': 'Open alerts' }, a.openAnomalies > 0 ? badge(String(a.openAnomalies), SEVERITY_KIND[a.worstSeverity ?? 'info'] ?? 'info') : h('span', { class: 'muted' }, '0')),
              ),
            ),
          ),
        ),
      ),
    );
  };

  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  const load = async () => {
    try {
      const r = await ctx.api.get<Accounts>('/api/v1/accounts');
      items = r.items;
      asOf = r.asOf;
      status.textContent = `Usage up to ${new Date(asOf).toLocaleTimeString()} · refreshes every ${POLL_MS / 1000} s`;
      render();
    } catch (err) {
      status.textContent = err instanceof ApiError && err.status === 403 ? '' : `Refresh failed: ${(err as Error).message}`;
      if (items.length === 0) replace(body, note((err as Error).message, 'error'));
    }
    if (!stopped) timer = setTimeout(tick, POLL_MS);
  };
  // Hidden tabs do not poll; they catch up on the next tick after becoming visible.
  const tick = () => {
    if (stopped) return;
    if (document.hidden) timer = setTimeout(tick, POLL_MS);
    else void load();
  };
  search.addEventListener('input', render);
  void load();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
};
