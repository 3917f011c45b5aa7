import { ApiError } from '../api.ts';
import type { Page, PageContext } from '../context.ts';
import { h, note, replace, section, table } from '../dom.ts';
import { money } from '../format.ts';
import type { Meter, PlanView, Subscription } from '../types.ts';
import { meterActions, meterForm, planForm, subscribeForm, subscriptionActions, versionHistory } from './catalog/editors.ts';

/** "2026-09-30 22:00 UTC": catalog instants as stored (a period starts at the customer's local midnight). */
const utc = (iso: string) => `${iso.slice(0, 16).replace('T', ' ')} UTC`;

interface CatalogPage<T> {
  items: T[];
  totalCount: number;
}

/** How many rows a list shows; more are counted and reached with the search box (the API pages). */
const PAGE_SIZE = 200;

/**
 * Meters, plans (with their versions) and subscriptions. A key with the billing scope edits
 * plans and subscriptions, an admin key meters; the buttons are not drawn for others (and the
 * API refuses them regardless). Every change can be previewed as this period's invoices first.
 */
export const catalogPage: Page = (ctx) => {
  ctx.title('Catalog');
  const metersEl = h('div', {}, note('Loading…'));
  const plansEl = h('div', {}, note('Loading…'));
  const subsEl = h('div', {}, note('Loading…'));
  replace(ctx.main, h('div', { class: 'page-head' }, h('h1', {}, 'Catalog')), section('Meters', 'meters', metersEl), section('Plans', 'plans', plansEl), section('Subscriptions', 'subscriptions', subsEl));
  const load = () => {
    void loadMeters(ctx, metersEl, load);
    void loadPlansAndSubscriptions(ctx, plansEl, subsEl, load);
  };
  load();
};

const fail = (el: HTMLElement) => (err: unknown) =>
  replace(el, note(err instanceof ApiError && err.status === 403 ? `Your key cannot see this: ${err.message}.` : (err as Error).message, err instanceof ApiError && err.status === 403 ? 'warn' : 'error'));

/** Open editors stay open across a reload (a save reloads the lists). */
const openEditors = (el: HTMLElement) => new Set([...el.querySelectorAll<HTMLDetailsElement>('details[open]')].map((d) => d.closest('[data-key]')?.getAttribute('data-key') ?? ''));

async function loadMeters(ctx: PageContext, el: HTMLElement, reload: () => void): Promise<void> {
  try {
    const ms = await ctx.api.get<Meter[]>('/api/v1/meters', { pageSize: String(PAGE_SIZE) });
    const admin = ctx.can('admin');
    replace(
      el,
      ms.length === 0
        ? note('No meters.')
        : table(
            ['Meter', 'Event type', 'Aggregation', 'Value', 'Group by', ...(admin ? [''] : [])],
            ms.map((m) =>
              h(
                'tr',
                { 'data-meter': m.slug, 'data-key': `meter:${m.slug}` },
                h('th', { scope: 'row' }, m.name ?? m.slug, h('div', { class: 'muted small mono' }, m.slug), m.description ? h('div', { class: 'muted small' }, m.description) : null),
                h('td', { class: 'mono' }, m.eventType),
                h('td', {}, m.aggregation),
                h('td', { class: 'mono' }, m.valueProperty ?? '—'),
                h('td', { class: 'mono' }, Object.entries(m.groupBy ?? {}).map(([k, v]) => `${k}: ${String(v)}`).join(', ') || '—'),
                admin ? h('td', {}, meterActions(ctx, m, reload)) : null,
              ),
            ),
          ),
      admin ? h('details', { class: 'editor' }, h('summary', {}, 'New meter'), meterForm(ctx, reload)) : null,
    );
  } catch (err) {
    fail(el)(err);
  }
}

async function loadPlansAndSubscriptions(ctx: PageContext, plansEl: HTMLElement, subsEl: HTMLElement, reload: () => void): Promise<void> {
  const open = new Set([...openEditors(plansEl), ...openEditors(subsEl)]);
  let plans: PlanView[] = [];
  try {
    const page = await ctx.api.get<CatalogPage<PlanView>>('/api/v1/plans', { pageSize: String(PAGE_SIZE) });
    plans = page.items;
    replace(plansEl, plansTable(ctx, page, reload), ctx.can('billing') ? h('details', { class: 'editor', 'data-key': 'new-plan' }, h('summary', {}, 'New plan'), planForm(ctx, reload)) : null);
  } catch (err) {
    fail(plansEl)(err);
  }
  try {
    const page = await ctx.api.get<CatalogPage<Subscription>>('/api/v1/subscriptions', { pageSize: String(PAGE_SIZE) });
    replace(subsEl, subscriptionsTable(ctx, page, plans, reload), ctx.can('billing') && plans.length ? h('details', { class: 'editor', 'data-key': 'subscribe' }, h('summary', {}, 'Subscribe a customer'), subscribeForm(ctx, plans, reload)) : null);
  } catch (err) {
    fail(subsEl)(err);
  }
  for (const d of [...plansEl.querySelectorAll<HTMLDetailsElement>('details'), ...subsEl.querySelectorAll<HTMLDetailsElement>('details')]) {
    const k = d.closest('[data-key]')?.getAttribute('data-key');
    if (k && open.has(k) && d.classList.contains('editor')) d.open = true;
  }
}

const more = (page: CatalogPage<unknown>) => (page.totalCount > page.items.length ? note(`Showing ${page.items.length} of ${page.totalCount}.`) : null);

function plansTable(ctx: PageContext, page: CatalogPage<PlanView>, reload: () => void): HTMLElement {
  if (page.items.length === 0) return note('No plans.');
  const billing = ctx.can('billing');
  return h(
    'div',
    {},
    table(
      ['Plan', 'Interval', h('th', { scope: 'col', class: 'num' }, 'Base fee'), h('th', { scope: 'col', class: 'num' }, 'Minimum'), 'Charges', 'Versions'],
      page.items.map((p) =>
        h(
          'tr',
          { 'data-plan': p.key, 'data-key': `plan:${p.key}` },
          h('th', { scope: 'row' }, p.name, h('div', { class: 'muted small mono' }, `${p.key} · ${p.currency} · v${p.version}${p.latestVersion !== p.version ? ` (v${p.latestVersion} from ${utc(p.versions.at(-1)!.effectiveFrom)})` : ''}`)),
          h('td', {}, p.interval),
          h('td', { class: 'num' }, p.baseFee ? `${money(p.baseFee.amount, p.currency)} ${p.baseFee.timing}` : '—'),
          h('td', { class: 'num' }, p.minimumCommitment ? money(p.minimumCommitment, p.currency) : '—'),
          h('td', {}, p.charges.map((c) => h('details', {}, h('summary', {}, `${c.description ?? c.key}: ${c.meter}, ${c.price.model.replace('_', ' ')}`), h('pre', { class: 'event' }, JSON.stringify(c.price, null, 2))))),
          h('td', {}, versionHistory(ctx, p), billing ? h('details', { class: 'editor' }, h('summary', {}, 'New version'), planForm(ctx, reload, p)) : null),
        ),
      ),
    ),
    more(page),
  );
}

function subscriptionsTable(ctx: PageContext, page: CatalogPage<Subscription>, plans: PlanView[], reload: () => void): HTMLElement {
  if (page.items.length === 0) return note('No subscriptions.');
  const billing = ctx.can('billing');
  return h(
    'div',
    {},
    table(
      ['Subscription', 'Account', 'Phases', 'Anchor', ...(billing ? [''] : [])],
      page.items.map((s) =>
        h(
          'tr',
          { 'data-subscription': s.id, 'data-key': `sub:${s.id}` },
          h('th', { scope: 'row', class: 'mono' }, s.id),
          h('td', {}, h('a', { href: `#/accounts/${encodeURIComponent(s.customer)}` }, s.customer)),
          h('td', {}, s.phases.map((p) => h('div', { 'data-phase': `${p.plan}@v${p.version ?? 1}` }, `${p.plan} v${p.version ?? 1} from ${utc(p.start)}${p.end ? ` to ${utc(p.end)}` : ''}`))),
          h('td', { class: 'nowrap' }, utc(s.anchor)),
          billing ? h('td', {}, subscriptionActions(ctx, s, plans, reload)) : null,
        ),
      ),
    ),
    more(page),
  );
}
