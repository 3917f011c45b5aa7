import { ApiError } from '../api.ts';
import type { Page } from '../context.ts';
import { SEVERITY_KIND } from '../components.ts';
import { badge, h, note, num, replace } from '../dom.ts';
import { money, period } from '../format.ts';
import type { AccountRow, AccountsPage } from '../types.ts';

const POLL_MS = 5_000;
const PAGE_SIZE = 50;
const SEARCH_DELAY_MS = 250;

/** Sort keys of GET /api/v1/accounts: `name`, `plan`, `projected`, `alerts`, or `usage.<meter>`. */
type SortKey = string;
const numeric = (k: SortKey) => k === 'projected' || k === 'alerts' || k.startsWith('usage.');
const count = (n: number) => n.toLocaleString('en-US');

/**
 * Customers with usage so far this period, projected invoice and open anomalies, one page at a
 * time: the server pages, sorts and searches (GET /api/v1/accounts, from its accounts cache), so
 * the page costs the same at 10 customers or 100,000. Only the page shown is polled, every few
 * seconds while the tab is visible.
 */
export const accountsPage: Page = (ctx) => {
  ctx.title('Accounts');
  const state = { sort: 'name' as SortKey, desc: false, page: 1, q: '' };
  let last: AccountsPage | undefined;
  const search = h('input', { id: 'account-search', type: 'search', placeholder: 'Name or key', autocomplete: 'off' });
  const status = h('p', { class: 'muted small', id: 'accounts-updated' });
  const body = h('div', {});
  const range = h('span', { id: 'accounts-range', 'aria-live': 'polite' });
  const prev = h('button', { type: 'button', id: 'accounts-prev', onclick: () => go(state.page - 1) }, '‹ Previous');
  const next = h('button', { type: 'button', id: 'accounts-next', onclick: () => go(state.page + 1) }, 'Next ›');
  replace(
    ctx.main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Accounts'), status),
    h('div', { class: 'toolbar' }, h('div', { class: 'field inline grow' }, h('label', { for: 'account-search' }, 'Search'), search), h('nav', { class: 'pager', 'aria-label': 'Pages' }, prev, range, next)),
    body,
  );

  const th = (label: string, k: SortKey, cls = '') => {
    const active = state.sort === k;
    return h(
      'th',
      { scope: 'col', class: cls, 'aria-sort': active ? (state.desc ? 'descending' : 'ascending') : 'none' },
      h('button', {
        type: 'button',
        class: 'sort',
        'data-sort': k,
        onclick: () => {
          state.desc = active ? !state.desc : numeric(k);
          state.sort = k;
          state.page = 1;
          void load().then(() => (body.querySelector(`th[aria-sort]:not([aria-sort="none"]) button`) as HTMLButtonElement | null)?.focus());
        },
      }, label, h('span', { class: 'sort-ind', 'aria-hidden': 'true' }, active ? (state.desc ? ' ▼' : ' ▲') : '')),
    );
  };

  const row = (a: AccountRow) =>
    h(
      'tr',
      { 'data-customer': a.customer.key },
      h('th', { scope: 'row', 'data-label': 'Customer' }, h('a', { href: `#/accounts/${encodeURIComponent(a.customer.key)}` }, a.customer.name), h('div', { class: 'muted small' }, `${a.customer.key} · ${a.customer.currency}`)),
      h('td', { 'data-label': 'Plan' }, a.subscriptions.map((s) => s.planName).join(', ') || h('span', { class: 'muted' }, 'none')),
      h('td', { class: 'nowrap', 'data-label': 'Period' }, period(a.period.start, a.period.end, a.customer.timeZone)),
      a.usage.map((u) => num(u.value, u.value, { 'data-meter': u.meter, 'data-label': u.name })),
      a.projected ? num(a.projected.projectedTotal, money(a.projected.projectedTotal, a.projected.currency), { 'data-col': 'projected', 'data-label': 'Projected', title: `so far ${money(a.projected.amountSoFar, a.projected.currency)}` }) : h('td', { class: 'num muted', 'data-col': 'projected', 'data-label': 'Projected', title: a.projectedError ?? 'no subscription' }, '—'),
      h('td', { class: 'num', 'data-col': 'alerts', 'data-label': 'Open alerts' }, a.openAnomalies > 0 ? badge(String(a.openAnomalies), SEVERITY_KIND[a.worstSeverity ?? 'info'] ?? 'info') : h('span', { class: 'muted' }, '0')),
    );

  const render = (p: AccountsPage) => {
    const from = p.totalCount === 0 ? 0 : (p.page - 1) * p.pageSize + 1;
    const to = Math.min(p.page * p.pageSize, p.totalCount);
    range.textContent = `${count(from)}–${count(to)} of ${count(p.totalCount)}`;
    prev.disabled = p.page <= 1;
    next.disabled = to >= p.totalCount;
    if (p.totalCount === 0) return replace(body, note(state.q ? `No customer matches “${state.q}”.` : 'No customers yet. Create one with POST /api/v1/customers.'));
    const meters = p.items[0]?.usage ?? [];
    replace(
      body,
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'accounts', 'aria-describedby': 'accounts-updated' },
          h('thead', {}, h('tr', {}, th('Customer', 'name'), th('Plan', 'plan'), h('th', { scope: 'col' }, 'Period'), meters.map((m) => th(m.name, `usage.${m.meter}`, 'num')), th('Projected', 'projected', 'num'), th('Alerts', 'alerts', 'num'))),
          h('tbody', {}, p.items.map(row)),
        ),
      ),
    );
  };

  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  /** Answers to older requests (a sort clicked, then a search typed) are dropped: the last one asked wins. */
  let asked = 0;
  const load = async () => {
    if (timer) clearTimeout(timer);
    const mine = ++asked;
    try {
      const r = await ctx.api.get<AccountsPage>('/api/v1/accounts', { page: String(state.page), pageSize: String(PAGE_SIZE), sort: state.sort, order: state.desc ? 'desc' : 'asc', q: state.q || undefined });
      if (mine !== asked) return;
      // Past the last page (customers went away, or a search narrowed them): show the last one.
      if (r.items.length === 0 && r.totalCount > 0 && state.page > 1) {
        state.page = Math.ceil(r.totalCount / r.pageSize);
        return load();
      }
      last = r;
      status.textContent = `Updated ${new Date(r.asOf).toLocaleTimeString()} · refreshes every ${POLL_MS / 1000} s${r.refresh.error ? ` · the server's last refresh failed: ${r.refresh.error}` : ''}`;
      render(r);
    } catch (err) {
      if (mine !== asked) return;
      status.textContent = err instanceof ApiError && err.status === 403 ? '' : `Refresh failed: ${(err as Error).message}`;
      if (!last) replace(body, note((err as Error).message, 'error'));
    }
    if (!stopped && mine === asked) timer = setTimeout(tick, POLL_MS);
  };
  const go = (page: number) => {
    state.page = Math.max(1, page);
    void load();
  };
  // Hidden tabs do not poll; they catch up on the next tick after becoming visible.
  const tick = () => {
    if (stopped) return;
    if (document.hidden) timer = setTimeout(tick, POLL_MS);
    else void load();
  };
  let typing: ReturnType<typeof setTimeout> | undefined;
  search.addEventListener('input', () => {
    if (typing) clearTimeout(typing);
    typing = setTimeout(() => {
      state.q = search.value.trim();
      go(1);
    }, SEARCH_DELAY_MS);
  });
  void load();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    if (typing) clearTimeout(typing);
  };
};
