import { ApiError } from '../api.ts';
import type { Page } from '../context.ts';
import { h, note, replace, section, table } from '../dom.ts';
import { money } from '../format.ts';
import type { Meter, Plan, Subscription } from '../types.ts';

/** "2026-09-30 22:00 UTC": catalog instants as stored (a period starts at the customer's local midnight). */
const utc = (iso: string) => `${iso.slice(0, 16).replace('T', ' ')} UTC`;

/** Meters, plans and subscriptions, read-only. */
export const catalogPage: Page = (ctx) => {
  ctx.title('Catalog');
  const metersEl = h('div', {}, note('Loading…'));
  const plansEl = h('div', {}, note('Loading…'));
  const subsEl = h('div', {}, note('Loading…'));
  replace(ctx.main, h('div', { class: 'page-head' }, h('h1', {}, 'Catalog')), section('Meters', 'meters', metersEl), section('Plans', 'plans', plansEl), section('Subscriptions', 'subscriptions', subsEl));
  const fail = (el: HTMLElement) => (err: unknown) => replace(el, note(err instanceof ApiError && err.status === 403 ? `Your key cannot see this: ${err.message}.` : (err as Error).message, err instanceof ApiError && err.status === 403 ? 'warn' : 'error'));
  ctx.api.get<Meter[]>('/api/v1/meters').then(
    (ms) =>
      replace(
        metersEl,
        ms.length === 0
          ? note('No meters.')
          : table(
              ['Meter', 'Event type', 'Aggregation', 'Value', 'Group by'],
              ms.map((m) => h('tr', { 'data-meter': m.slug }, h('th', { scope: 'row' }, m.name ?? m.slug, h('div', { class: 'muted small mono' }, m.slug)), h('td', { class: 'mono' }, m.eventType), h('td', {}, m.aggregation), h('td', { class: 'mono' }, m.valueProperty ?? '—'), h('td', { class: 'mono' }, Object.entries(m.groupBy ?? {}).map(([k, v]) => `${k}: ${String(v)}`).join(', ') || '—'))),
            ),
      ),
    fail(metersEl),
  );
  ctx.api.get<Plan[]>('/api/v1/plans').then(
    (ps) =>
      replace(
        plansEl,
        ps.length === 0
          ? note('No plans.')
          : table(
              ['Plan', 'Interval', h('th', { scope: 'col', class: 'num' }, 'Base fee'), h('th', { scope: 'col', class: 'num' }, 'Minimum'), 'Charges'],
              ps.map((p) =>
                h(
                  'tr',
                  { 'data-plan': p.key },
                  h('th', { scope: 'row' }, p.name, h('div', { class: 'muted small mono' }, `${p.key} · ${p.currency}`)),
                  h('td', {}, p.interval),
                  h('td', { class: 'num' }, p.baseFee ? `${money(p.baseFee.amount, p.currency)} ${p.baseFee.timing}` : '—'),
                  h('td', { class: 'num' }, p.minimumCommitment ? money(p.minimumCommitment, p.currency) : '—'),
                  h('td', {}, p.charges.map((c) => h('details', {}, h('summary', {}, `${c.description ?? c.key}: ${c.meter}, ${c.price.model.replace('_', ' ')}`), h('pre', { class: 'event' }, JSON.stringify(c.price, null, 2))))),
                ),
              ),
            ),
      ),
    fail(plansEl),
  );
  ctx.api.get<Subscription[]>('/api/v1/subscriptions').then(
    (ss) =>
      replace(
        subsEl,
        ss.length === 0
          ? note('No subscriptions.')
          : table(
              ['Subscription', 'Account', 'Phases', 'Anchor'],
              ss.map((s) =>
                h(
                  'tr',
                  { 'data-subscription': s.id },
                  h('th', { scope: 'row', class: 'mono' }, s.id),
                  h('td', {}, h('a', { href: `#/accounts/${encodeURIComponent(s.customer)}` }, s.customer)),
                  h('td', {}, s.phases.map((p) => h('div', {}, `${p.plan} from ${utc(p.start)}${p.end ? ` to ${utc(p.end)}` : ''}`))),
                  h('td', { class: 'nowrap' }, utc(s.anchor)),
                ),
              ),
            ),
      ),
    fail(subsEl),
  );
};
