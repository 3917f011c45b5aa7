import { ApiError } from '../api.ts';
import type { Page, PageContext } from '../context.ts';
import { anomaliesView, invoicesView, projectedView, usagePanel, type Cleanup, type MeterInfo } from '../components.ts';
import { h, note, num, replace, section, table } from '../dom.ts';
import { dateTime, money, period, quantity as formatQuantity, zoneName } from '../format.ts';
import type { Account, AccountSummary, Adjustment, Anomaly, Invoice, InvoiceHead, Meter, PortalTokenCreated, PortalTokenRecord, Projected, UsageResult } from '../types.ts';

const REASON_CODES = ['goodwill', 'outage_credit', 'billing_error', 'duplicate_usage', 'contract_change', 'prepaid', 'other'];

/** Shows a section's failure in place: a missing scope says which one, anything else its message. */
function failed(el: HTMLElement, err: unknown, what: string): void {
  if (err instanceof ApiError && err.status === 403) replace(el, note(`Your key cannot see ${what}: ${err.message}.`, 'warn'));
  else replace(el, note((err as Error).message, 'error'));
}

/**
 * One customer: summary, usage charts by hour/day with breakdowns, the projected invoice,
 * invoices with their tier breakdown, anomalies (acknowledge/resolve), adjustments with the
 * audit trail, and portal links. Sections load independently; each asks only for what the
 * signed-in key's scopes allow and says so when it cannot.
 */
export const accountPage: Page = (ctx, [rawKey]) => {
  const key = decodeURIComponent(rawKey ?? '');
  const cleanups: Cleanup[] = [];
  const head = h('div', { class: 'page-head' }, h('h1', {}, key), h('p', { class: 'muted' }, 'Loading…'));
  const summaryEl = h('div', {});
  const usageEl = h('div', {}, note('Loading usage…'));
  const projectedEl = h('div', {}, note('Loading…'));
  const invoicesEl = h('div', {}, note('Loading…'));
  const anomaliesEl = h('div', {}, note('Loading…'));
  const adjustmentsEl = h('div', {});
  const portalEl = h('div', {});
  replace(
    ctx.main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/accounts' }, 'Accounts'), ' / ', h('span', { 'aria-current': 'page' }, key)),
    head,
    summaryEl,
    section('Usage', 'usage', usageEl),
    section('Projected invoice', 'projected', projectedEl),
    section('Invoices', 'invoices', invoicesEl),
    section('Anomalies', 'anomalies', anomaliesEl),
    section('Adjustments', 'adjustments', adjustmentsEl),
    ctx.can('admin') ? section('Customer portal', 'portal', portalEl) : null,
  );
  ctx.title(key);

  void (async () => {
    let acc: Account;
    try {
      acc = await ctx.api.get<Account>(`/api/v1/accounts/${encodeURIComponent(key)}`);
    } catch (err) {
      replace(head, h('h1', {}, key), note((err as Error).message, 'error'));
      for (const el of [usageEl, projectedEl, invoicesEl, anomaliesEl]) replace(el);
      return;
    }
    const c = acc.customer;
    const tz = c.timeZone;
    ctx.title(c.name);
    replace(head, h('h1', {}, c.name), h('p', { class: 'muted' }, `${c.key} · billed in ${c.currency} · times in ${tz} (${zoneName(tz)})`));
    replace(
      summaryEl,
      h(
        'dl',
        { class: 'stats cards' },
        h('div', {}, h('dt', {}, 'Plan'), h('dd', {}, acc.subscriptions.map((s) => s.planName).join(', ') || 'none')),
        h('div', {}, h('dt', {}, acc.period.source === 'subscription' ? 'Billing period' : 'Calendar month'), h('dd', {}, period(acc.period.start, acc.period.end, tz))),
        acc.usage.map((u) => h('div', {}, h('dt', {}, `${u.name} so far`), h('dd', { class: 'num', 'data-meter': u.meter, 'data-value': u.value }, formatQuantity(u.value)))),
        acc.projected ? h('div', {}, h('dt', {}, 'Projected invoice'), h('dd', { class: 'strong', 'data-value': acc.projected.projectedTotal }, money(acc.projected.projectedTotal, acc.projected.currency))) : null,
        h('div', {}, h('dt', {}, 'Open anomalies'), h('dd', {}, String(acc.openAnomalies))),
      ),
    );

    // Usage charts.
    const meters = await ctx.api.get<Meter[]>('/api/v1/meters').catch((err: unknown) => {
      failed(usageEl, err, 'meters');
      return undefined;
    });
    if (meters) {
      const infos: MeterInfo[] = meters.map((m) => ({ slug: m.slug, name: m.name ?? m.slug, aggregation: m.aggregation, groupBy: Object.keys(m.groupBy ?? {}) }));
      const panel = usagePanel({ meters: infos, timeZone: tz, periodStart: acc.period.start, idPrefix: 'acct', query: (m, q) => ctx.api.get<UsageResult>(`/api/v1/meters/${encodeURIComponent(m)}/query`, { ...q, subject: key }) });
      cleanups.push(panel.cleanup);
      replace(usageEl, panel.el);
    }

    const loadProjected = () =>
      ctx.api.get<Projected>(`/api/v1/customers/${encodeURIComponent(key)}/projected-invoice`).then(
        (p) => replace(projectedEl, projectedView(p, tz)),
        (err: unknown) => failed(projectedEl, err, 'the projected invoice'),
      );
    void loadProjected();

    ctx.api.get<{ items: InvoiceHead[] }>('/api/v1/invoices', { customer: key, pageSize: '1000' }).then(
      (r) => replace(invoicesEl, invoicesView(r.items, (id) => ctx.api.get<Invoice>(`/api/v1/invoices/${encodeURIComponent(id)}`), tz)),
      (err: unknown) => failed(invoicesEl, err, 'invoices (billing scope)'),
    );

    const loadAnomalies = () =>
      ctx.api.get<{ items: Anomaly[] }>('/api/v1/anomalies', { customer: key }).then(
        (r) => replace(anomaliesEl, ctx.can('admin') ? null : note('Read-only: acknowledging and resolving need the admin scope.'), anomaliesView(r.items, tz, ctx.can('admin') ? (a) => anomalyActions(ctx, a, loadAnomalies) : undefined)),
        (err: unknown) => failed(anomaliesEl, err, 'anomalies'),
      );
    void loadAnomalies();

    adjustments(ctx, adjustmentsEl, acc, meters ?? [], loadProjected);
    if (ctx.can('admin')) portal(ctx, portalEl, acc);
  })();

  return () => cleanups.forEach((c) => c());
};

function anomalyActions(ctx: PageContext, a: Anomaly, reload: () => Promise<void>): HTMLElement | null {
  if (a.status === 'resolved') return h('span', { class: 'muted small' }, a.resolvedBy ? `resolved by ${a.resolvedBy.slice(0, 8)}` : 'resolved');
  const noteId = `resolve-note-${a.id}`;
  const input = h('input', { id: noteId, type: 'text', placeholder: 'What was done', maxlength: '2000' });
  const msg = h('span', { class: 'small', role: 'status' });
  const act = (path: string, body?: unknown) => async (ev: Event) => {
    const btn = ev.currentTarget as HTMLButtonElement;
    btn.disabled = true;
    try {
      await ctx.api.post(path, body);
      await reload();
    } catch (err) {
      msg.textContent = (err as Error).message;
      btn.disabled = false;
    }
  };
  return h(
    'div',
    { class: 'actions' },
    a.status === 'open' ? h('button', { type: 'button', class: 'btn', onclick: act(`/api/v1/anomalies/${a.id}/acknowledge`) }, 'Acknowledge') : null,
    h('label', { for: noteId, class: 'sr-only' }, 'Resolution note'),
    input,
    h('button', { type: 'button', class: 'btn', onclick: (ev: Event) => void act(`/api/v1/anomalies/${a.id}/resolve`, { note: input.value })(ev) }, 'Resolve'),
    msg,
  );
}

/** The adjustments form (billing scope) and the audit trail: every adjustment, who made it, when and why. */
function adjustments(ctx: PageContext, el: HTMLElement, acc: AccountSummary, meters: Meter[], onCreated: () => Promise<void>): void {
  const key = acc.customer.key;
  const tz = acc.customer.timeZone;
  const trail = h('div', {}, note('Loading…'));
  const loadTrail = () =>
    ctx.api.get<{ items: Adjustment[] }>('/api/v1/adjustments', { customer: key, pageSize: '1000' }).then(
      (r) =>
        replace(
          trail,
          r.items.length === 0
            ? note('No adjustments yet.')
            : table(
                ['When', 'Kind', 'Amount / quantity', 'Reason', 'Note', 'By'],
                [...r.items].reverse().map((a) =>
                  h(
                    'tr',
                    { 'data-adjustment': a.id },
                    h('td', { class: 'nowrap', 'data-label': 'When' }, dateTime(a.createdAt, tz)),
                    h('td', { 'data-label': 'Kind' }, a.kind.replace('_', ' ')),
                    a.kind === 'usage_correction' ? num(a.quantity, `${formatQuantity(a.quantity)} ${a.meter}`, { 'data-label': 'Quantity' }) : num(a.amount, money(a.amount, a.currency), { 'data-label': 'Amount' }),
                    h('td', { 'data-col': 'reason', 'data-label': 'Reason' }, a.reasonCode),
                    h('td', { 'data-label': 'Note' }, a.note, a.expiresAt ? h('div', { class: 'muted small' }, `expires ${dateTime(a.expiresAt, tz)}`) : null, a.periodStart ? h('div', { class: 'muted small' }, `period of ${dateTime(a.periodStart, tz)}`) : null),
                    h('td', { class: 'mono small', title: a.actor, 'data-label': 'By' }, a.actor.slice(0, 8)),
                  ),
                ),
                { class: 'audit stack', 'aria-label': 'Audit trail' },
              ),
        ),
      (err: unknown) => failed(trail, err, 'adjustments (billing scope)'),
    );

  if (!ctx.can('billing')) {
    replace(el, note('Read-only: creating adjustments needs the billing scope.'), h('h3', {}, 'Audit trail'), trail);
    void loadTrail();
    return;
  }
  const field = (id: string, label: string, input: HTMLElement, hint?: string) => h('div', { class: 'field', id: `${id}-field` }, h('label', { for: id }, label), input, hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null);
  const kind = h('select', { id: 'adj-kind', name: 'kind' }, h('option', { value: 'credit' }, 'Credit (reduces the next invoice)'), h('option', { value: 'charge' }, 'Charge (adds to the next invoice)'), h('option', { value: 'usage_correction' }, 'Usage correction'), h('option', { value: 'credit_grant' }, 'Prepaid credit grant'));
  const amount = h('input', { id: 'adj-amount', name: 'amount', inputmode: 'decimal', autocomplete: 'off', pattern: '\\d+(\\.\\d+)?', placeholder: '25.00', 'aria-describedby': 'adj-amount-hint' });
  const meter = h('select', { id: 'adj-meter', name: 'meter' }, meters.filter((m) => m.aggregation === 'SUM' || m.aggregation === 'COUNT').map((m) => h('option', { value: m.slug }, m.name ?? m.slug)));
  const quantity = h('input', { id: 'adj-quantity', name: 'quantity', inputmode: 'decimal', autocomplete: 'off', placeholder: '-120' });
  const periodAt = h('input', { id: 'adj-period', name: 'periodStart', type: 'text', value: acc.period.start, 'aria-describedby': 'adj-period-hint' });
  const expires = h('input', { id: 'adj-expires', name: 'expiresAt', type: 'text', placeholder: '2027-12-31T00:00:00Z' });
  const reason = h('select', { id: 'adj-reason', name: 'reasonCode', required: true }, REASON_CODES.map((r) => h('option', { value: r }, r)));
  const noteIn = h('textarea', { id: 'adj-note', name: 'note', rows: '2', maxlength: '1000', placeholder: 'Why (kept in the audit trail)' });
  const msg = h('p', { class: 'small', role: 'status', id: 'adj-status' });
  const submit = h('button', { type: 'submit', class: 'btn primary' }, 'Add adjustment');
  const show = () => {
    const k = kind.value;
    const visible: Record<string, boolean> = { 'adj-amount': k !== 'usage_correction', 'adj-meter': k === 'usage_correction', 'adj-quantity': k === 'usage_correction', 'adj-period': k === 'usage_correction', 'adj-expires': k === 'credit_grant' };
    for (const [id, on] of Object.entries(visible)) (form.querySelector(`#${id}-field`) as HTMLElement).hidden = !on;
  };
  const form = h(
    'form',
    { class: 'form-grid', 'aria-label': 'New adjustment', novalidate: true },
    field('adj-kind', 'Kind', kind),
    field('adj-amount', `Amount (${acc.customer.currency})`, amount, 'A decimal, e.g. 25.00'),
    field('adj-meter', 'Meter', meter),
    field('adj-quantity', 'Quantity (negative to remove usage)', quantity),
    field('adj-period', 'A time inside the period to correct', periodAt, 'RFC 3339, e.g. 2026-11-01T00:00:00Z'),
    field('adj-expires', 'Expires at (optional)', expires),
    field('adj-reason', 'Reason code', reason),
    field('adj-note', 'Note', noteIn),
    h('div', { class: 'form-actions' }, submit, msg),
  );
  kind.addEventListener('change', show);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const k = kind.value;
    const body: Record<string, string> = { customer: key, kind: k, reasonCode: reason.value, note: noteIn.value };
    if (k === 'usage_correction') Object.assign(body, { meter: meter.value, quantity: quantity.value.trim(), periodStart: periodAt.value.trim() });
    else body.amount = amount.value.trim();
    if (k === 'credit_grant' && expires.value.trim()) body.expiresAt = expires.value.trim();
    submit.disabled = true;
    msg.textContent = 'Saving…';
    ctx.api.post<Adjustment>('/api/v1/adjustments', body).then(
      async (a) => {
        msg.textContent = `Added ${a.kind.replace('_', ' ')} (${a.reasonCode}).`;
        amount.value = '';
        quantity.value = '';
        noteIn.value = '';
        submit.disabled = false;
        await Promise.all([loadTrail(), onCreated()]);
      },
      (err: Error) => {
        msg.textContent = err.message;
        submit.disabled = false;
      },
    );
  });
  replace(el, form, h('h3', {}, 'Audit trail'), trail);
  show();
  void loadTrail();
}

/** Admins create a portal link for this customer (shown once) and revoke old ones. */
function portal(ctx: PageContext, el: HTMLElement, acc: AccountSummary): void {
  const key = acc.customer.key;
  const list = h('div', {});
  const out = h('div', { 'aria-live': 'polite' });
  const load = () =>
    ctx.api.get<PortalTokenRecord[]>('/api/v1/portal-tokens', { customer: key }).then(
      (items) =>
        replace(
          list,
          items.length === 0
            ? note('No portal tokens for this customer.')
            : table(
                ['Token', 'Created', 'Expires', ''],
                items.map((t) =>
                  h(
                    'tr',
                    {},
                    h('td', { class: 'mono' }, `${t.prefix}…`),
                    h('td', { class: 'nowrap' }, dateTime(t.createdAt, acc.customer.timeZone)),
                    h('td', { class: 'nowrap' }, t.expiresAt ? dateTime(t.expiresAt, acc.customer.timeZone) : 'never'),
                    h('td', {}, h('button', { type: 'button', class: 'btn', onclick: () => void ctx.api.del(`/api/v1/portal-tokens/${t.id}`).then(load) }, 'Revoke')),
                  ),
                ),
              ),
        ),
      (err: unknown) => failed(list, err, 'portal tokens'),
    );
  const days = h('select', { id: 'portal-days' }, h('option', { value: '30' }, '30 days'), h('option', { value: '90' }, '90 days'), h('option', { value: '365' }, '1 year'), h('option', { value: '' }, 'Never'));
  const create = h('button', { type: 'button', class: 'btn primary', id: 'create-portal-link' }, 'Create portal link');
  create.addEventListener('click', () => {
    create.disabled = true;
    const expiresAt = days.value ? new Date(Date.now() + Number(days.value) * 86_400_000).toISOString() : undefined;
    ctx.api.post<PortalTokenCreated>('/api/v1/portal-tokens', { customer: key, ...(expiresAt ? { expiresAt } : {}) }).then(
      (r) => {
        const url = new URL(r.portalUrl, location.origin).toString();
        const input = h('input', { id: 'portal-link', type: 'text', readonly: true, value: url, class: 'mono' });
        replace(
          out,
          h('div', { class: 'field' }, h('label', { for: 'portal-link' }, 'Portal link (shown once; send it to the customer)'), h('div', { class: 'row' }, input, h('button', { type: 'button', class: 'btn', onclick: () => void navigator.clipboard?.writeText(url) }, 'Copy'))),
        );
        input.select();
        create.disabled = false;
        void load();
      },
      (err: Error) => {
        replace(out, note(err.message, 'error'));
        create.disabled = false;
      },
    );
  });
  replace(el, h('p', { class: 'muted' }, `A portal link shows ${acc.customer.name} its own usage, projected cost, invoices and alerts, and nothing else.`), h('div', { class: 'toolbar' }, h('div', { class: 'field inline' }, h('label', { for: 'portal-days' }, 'Valid for'), days), create), out, list);
  void load();
}
