import './styles.css';
import { ApiError, createApi, session, type Query } from './api.ts';
import { anomaliesView, invoicesView, projectedView, usagePanel, type MeterInfo } from './components.ts';
import { h, note, replace, section } from './dom.ts';
import { money, period, quantity, zoneName } from './format.ts';
import type { Account, Anomaly, Invoice, InvoiceHead, PortalMeter, Projected, UsageResult } from './types.ts';

/**
 * The customer portal: one customer's usage, projected cost, invoices and usage alerts, through
 * the /api/v1/portal routes with a portal token (mlp_...). The token arrives in the link's
 * fragment (#token=..., never sent to a server), moves to sessionStorage and leaves the URL.
 * The customer is the token's; a `?customer=` in the URL is passed to the API, which refuses
 * anything but the token's own customer, and the page then shows nothing.
 */
const store = session('meterline.portalToken');
const root = document.getElementById('root')!;
const api = createApi(store, () => signIn('This portal link has expired or was revoked. Ask your account manager for a new one.'));

const fromHash = /(?:^#|&)token=(mlp_[A-Za-z0-9_-]+)/.exec(location.hash)?.[1];
if (fromHash) {
  store.set(fromHash);
  history.replaceState(null, '', location.pathname + location.search);
}
const named = new URLSearchParams(location.search).get('customer') ?? undefined;
const scoped = (q: Query = {}): Query => ({ ...q, ...(named ? { customer: named } : {}) });

function signIn(message?: string): void {
  store.clear();
  document.title = 'Usage portal';
  const input = h('input', { id: 'portal-token', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
  const err = h('p', { class: 'note note-error', role: 'alert', hidden: !message }, message ?? '');
  const form = h(
    'form',
    { class: 'signin card', 'aria-labelledby': 'signin-h' },
    h('h1', { id: 'signin-h' }, 'Usage portal'),
    h('div', { class: 'field' }, h('label', { for: 'portal-token' }, 'Portal token'), input, h('p', { class: 'hint' }, 'The mlp_… token from your portal link.')),
    err,
    h('button', { type: 'submit', class: 'btn primary' }, 'Open'),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    store.set(input.value.trim());
    void show();
  });
  replace(root, h('main', { id: 'main', class: 'center' }, form));
  input.focus();
}

function refused(err: unknown): boolean {
  if (!(err instanceof ApiError) || err.status !== 403) return false;
  document.title = 'Not allowed · Usage portal';
  replace(
    root,
    h(
      'main',
      { id: 'main', class: 'center' },
      h('div', { class: 'card signin', role: 'alert', id: 'portal-refused' }, h('h1', {}, 'Not allowed'), h('p', {}, 'This portal link does not give access to that account.'), h('p', { class: 'muted small' }, err.message), h('a', { href: location.pathname }, 'Back to your account')),
    ),
  );
  return true;
}

async function show(): Promise<void> {
  let acc: Account;
  try {
    acc = await api.get<Account>('/api/v1/portal/account', scoped());
  } catch (err) {
    if (refused(err)) return;
    if (err instanceof ApiError && err.status === 401) return; // signIn() already shown
    replace(root, h('main', { id: 'main', class: 'center' }, note((err as Error).message, 'error')));
    return;
  }
  const c = acc.customer;
  const tz = c.timeZone;
  if (!named) history.replaceState(null, '', `${location.pathname}?customer=${encodeURIComponent(c.key)}`);
  document.title = `${c.name} · Usage portal`;
  const usageEl = h('div', {}, note('Loading…'));
  const projectedEl = h('div', {}, note('Loading…'));
  const invoicesEl = h('div', {}, note('Loading…'));
  const alertsEl = h('div', {}, note('Loading…'));
  replace(
    root,
    h(
      'header',
      { class: 'top' },
      h('span', { class: 'brand' }, h('span', { class: 'logo', 'aria-hidden': 'true' }, '◧'), ` ${c.name}`),
      h('div', { class: 'who' }, h('span', { class: 'small muted' }, 'Usage portal'), h('button', { type: 'button', class: 'btn', onclick: () => signIn() }, 'Sign out')),
    ),
    h(
      'main',
      { id: 'main' },
      h('div', { class: 'page-head' }, h('h1', {}, 'Your usage'), h('p', { class: 'muted' }, `Billed in ${c.currency} · times in ${tz} (${zoneName(tz)})`)),
      h(
        'dl',
        { class: 'stats cards' },
        h('div', {}, h('dt', {}, acc.period.source === 'subscription' ? 'Billing period' : 'This month'), h('dd', {}, period(acc.period.start, acc.period.end, tz))),
        acc.usage.map((u) => h('div', {}, h('dt', {}, `${u.name} so far`), h('dd', { class: 'num', 'data-meter': u.meter, 'data-value': u.value }, quantity(u.value)))),
        acc.projected ? h('div', {}, h('dt', {}, 'Cost so far'), h('dd', { 'data-value': acc.projected.amountSoFar }, money(acc.projected.amountSoFar, acc.projected.currency))) : null,
        acc.projected ? h('div', {}, h('dt', {}, 'Projected for the period'), h('dd', { class: 'strong', 'data-value': acc.projected.projectedTotal, 'data-testid': 'portal-projected' }, money(acc.projected.projectedTotal, acc.projected.currency))) : null,
        h('div', {}, h('dt', {}, 'Open alerts'), h('dd', {}, String(acc.openAnomalies))),
      ),
      section('Usage', 'usage', usageEl),
      section('Projected invoice', 'projected', projectedEl),
      section('Invoices', 'invoices', invoicesEl),
      section('Usage alerts', 'alerts', alertsEl),
    ),
  );
  const fail = (el: HTMLElement) => (err: unknown) => {
    if (!refused(err)) replace(el, note((err as Error).message, 'error'));
  };
  api.get<PortalMeter[]>('/api/v1/portal/meters', scoped()).then((ms) => {
    const infos: MeterInfo[] = ms.map((m) => ({ slug: m.slug, name: m.name, aggregation: m.aggregation, groupBy: m.groupBy }));
    replace(usageEl, usagePanel({ meters: infos, timeZone: tz, periodStart: acc.period.start, idPrefix: 'portal', query: (m, q) => api.get<UsageResult>(`/api/v1/portal/meters/${encodeURIComponent(m)}/query`, scoped(q)) }).el);
  }, fail(usageEl));
  api.get<Projected>('/api/v1/portal/projected-invoice', scoped()).then((p) => replace(projectedEl, projectedView(p, tz)), fail(projectedEl));
  api.get<{ items: InvoiceHead[] }>('/api/v1/portal/invoices', scoped()).then((r) => replace(invoicesEl, invoicesView(r.items, (id) => api.get<Invoice>(`/api/v1/portal/invoices/${encodeURIComponent(id)}`, scoped()), tz)), fail(invoicesEl));
  api.get<{ items: Anomaly[] }>('/api/v1/portal/anomalies', scoped()).then((r) => replace(alertsEl, anomaliesView(r.items, tz)), fail(alertsEl));
}

if (store.get()) void show();
else signIn();
