import type { PageContext } from '../../context.ts';
import { h, note, replace } from '../../dom.ts';
import type { InvoicePreviews, Meter, PlanVersion, PlanView, Subscription } from '../../types.ts';
import { confirmButton, field, formBox, input, jsonOf, previewView, select, submit, textarea, toUtcInput, utcInput } from './forms.ts';

/** The editors of the catalog page; `done` reloads the lists after a save. */

const AGGREGATIONS = ['COUNT', 'SUM', 'UNIQUE_COUNT', 'MIN', 'MAX', 'AVG', 'LATEST'];
const CHARGES_HINT = 'JSON: [{"key": "calls", "meter": "api-calls", "price": {"model": "per_unit", "unitPrice": "0.01"}}]; price models: per_unit, package, graduated, volume, percentage, dimensional. Amounts are decimal strings.';

export function meterForm(ctx: PageContext, done: () => void): HTMLElement {
  const slug = input({ required: true, pattern: '[a-z0-9][a-z0-9_-]{0,62}' });
  const name = input();
  const eventType = input({ required: true });
  const aggregation = select(AGGREGATIONS.map((a) => [a, a]));
  const valueProperty = input({ placeholder: '$.tokens' });
  const result = h('div');
  const form = formBox(
    'meter-form',
    'New meter',
    field('Slug', 'slug', slug, 'lower-case letters, digits, - and _'),
    field('Name', 'name', name),
    field('Event type', 'eventType', eventType),
    field('Aggregation', 'aggregation', aggregation),
    field('Value property', 'valueProperty', valueProperty, 'JSON path into data; none for COUNT'),
    h('button', { type: 'submit', class: 'btn primary' }, 'Create meter'),
    result,
  );
  form.addEventListener('submit', () => {
    void submit(form, async () => {
      const body = { slug: slug.value.trim(), ...(name.value ? { name: name.value } : {}), eventType: eventType.value.trim(), aggregation: aggregation.value, ...(valueProperty.value ? { valueProperty: valueProperty.value.trim() } : {}) };
      await ctx.api.post<Meter>('/api/v1/meters', body);
      replace(result, note(`Meter ${body.slug} created.`));
      done();
    });
  });
  return form;
}

/** Name and description of a meter, and its deletion (refused by the API while a plan charges for it). */
export function meterActions(ctx: PageContext, m: Meter, done: () => void): HTMLElement {
  const name = input({ value: m.name ?? '' });
  const description = input({ value: m.description ?? '' });
  const form = formBox(
    `meter-edit-${m.slug}`,
    `Edit ${m.slug}`,
    field('Name', 'name', name),
    field('Description', 'description', description),
    h('p', { class: 'hint' }, 'Event type, aggregation and value property cannot change: stored usage was measured with them. Create a new meter instead.'),
    h('button', { type: 'submit', class: 'btn primary' }, 'Save'),
    ' ',
    confirmButton('Delete meter', `delete ${m.slug}`, () => void submit(form, async () => (await ctx.api.del(`/api/v1/meters/${encodeURIComponent(m.slug)}`), done())), { 'data-action': 'delete-meter' }),
  );
  form.addEventListener('submit', () => void submit(form, async () => (await ctx.api.patch(`/api/v1/meters/${encodeURIComponent(m.slug)}`, { name: name.value, description: description.value }), done())));
  return h('details', { class: 'editor' }, h('summary', {}, 'Edit'), form);
}

/** A plan definition form: new plan (`plan` absent) or a new version of `plan`, with preview before publishing. */
export function planForm(ctx: PageContext, done: () => void, plan?: PlanView): HTMLElement {
  const key = input({ required: true, value: plan?.key ?? '', ...(plan ? { readonly: true } : {}) });
  const name = input({ required: true, value: plan?.name ?? '' });
  const currency = input({ required: true, value: plan?.currency ?? 'USD', maxlength: '3', ...(plan ? { readonly: true } : {}) });
  const interval = select([['month', 'month'], ['quarter', 'quarter'], ['year', 'year']], plan?.interval ?? 'month');
  if (plan) interval.disabled = true;
  const baseFee = input({ value: plan?.baseFee?.amount ?? '', inputmode: 'decimal', placeholder: '49.00' });
  const timing = select([['arrears', 'in arrears'], ['advance', 'in advance']], plan?.baseFee?.timing ?? 'arrears');
  const minimum = input({ value: plan?.minimumCommitment ?? '', inputmode: 'decimal' });
  const charges = textarea(JSON.stringify(plan?.charges ?? [], null, 2), 10);
  const effectiveFrom = h('input', { type: 'datetime-local', value: toUtcInput(Date.now()) });
  const result = h('div', { class: 'preview-box' });
  const id = plan ? `version-form-${plan.key}` : 'plan-form';
  const previewBtn = plan ? h('button', { type: 'button', class: 'btn', 'data-action': 'preview' }, 'Preview invoices') : null;
  const form = formBox(
    id,
    plan ? `New version of ${plan.key} (now version ${plan.latestVersion})` : 'New plan',
    field('Key', 'key', key),
    field('Name', 'name', name),
    field('Currency', 'currency', currency, plan ? "A plan's currency cannot change: create a new plan." : 'ISO 4217, e.g. USD'),
    field('Interval', 'interval', interval, plan ? "A plan's interval cannot change." : undefined),
    field('Base fee', 'baseFee', baseFee, 'Decimal, empty for none'),
    field('Base fee timing', 'baseFee.timing', timing),
    field('Minimum commitment', 'minimumCommitment', minimum),
    field('Charges', 'charges', charges, CHARGES_HINT),
    plan ? field('Effective from (UTC)', 'effectiveFrom', effectiveFrom, 'Subscriptions starting from then get this version; existing ones keep theirs until migrated.') : null,
    h('div', { class: 'actions' }, previewBtn, h('button', { type: 'submit', class: 'btn primary' }, plan ? 'Publish version' : 'Create plan')),
    result,
  );
  const body = () => {
    const c = jsonOf(form, 'charges', charges.value);
    if (c === null) return null;
    return {
      key: key.value.trim(),
      name: name.value,
      currency: currency.value.trim(),
      interval: interval.value,
      ...(baseFee.value ? { baseFee: { amount: baseFee.value.trim(), timing: timing.value } } : {}),
      ...(minimum.value ? { minimumCommitment: minimum.value.trim() } : {}),
      charges: c,
    };
  };
  previewBtn?.addEventListener('click', () => {
    const b = body();
    if (!b) return;
    void submit(form, async () => replace(result, previewView(await ctx.api.post<InvoicePreviews>('/api/v1/invoices/preview', { kind: 'plan-version', plan: b, effectiveFrom: utcInput(effectiveFrom.value) }))));
  });
  form.addEventListener('submit', () => {
    const b = body();
    if (!b) return;
    void submit(form, async () => {
      if (!plan) await ctx.api.post('/api/v1/plans', b);
      else {
        const { key: _k, ...def } = b;
        const v = await ctx.api.post<PlanVersion>(`/api/v1/plans/${encodeURIComponent(plan.key)}/versions`, { ...def, effectiveFrom: utcInput(effectiveFrom.value), expectedVersion: plan.latestVersion });
        replace(result, note(`Version ${v.version} published, effective from ${v.effectiveFrom}.`));
      }
      done();
    });
  });
  return form;
}

/** The versions of a plan, each opening its definition. */
export function versionHistory(ctx: PageContext, plan: PlanView): HTMLElement {
  const list = h('ol', { class: 'versions', 'data-versions': plan.key });
  for (const v of plan.versions) {
    const body = h('pre', { class: 'event' }, '…');
    const d = h('details', {}, h('summary', {}, `v${v.version} ${v.name}, from ${v.effectiveFrom.slice(0, 16).replace('T', ' ')} UTC${v.version === plan.version ? ' (in force)' : ''}`), body);
    d.addEventListener('toggle', () => {
      if (d.open && body.textContent === '…') ctx.api.get<PlanVersion>(`/api/v1/plans/${encodeURIComponent(plan.key)}/versions/${v.version}`).then((x) => (body.textContent = JSON.stringify(x, null, 2)), (e: Error) => (body.textContent = e.message));
    });
    list.append(h('li', { 'data-version': String(v.version) }, d));
  }
  return list;
}

export function subscribeForm(ctx: PageContext, plans: PlanView[], done: () => void): HTMLElement {
  const customer = input({ required: true });
  const plan = select(plans.map((p) => [p.key, `${p.name} (${p.key})`]));
  const start = h('input', { type: 'datetime-local', value: toUtcInput(Date.now()) });
  const form = formBox('subscribe-form', 'Subscribe a customer', field('Customer key', 'customer', customer), field('Plan', 'plan', plan), field('Start (UTC)', 'start', start), h('button', { type: 'submit', class: 'btn primary' }, 'Subscribe'));
  form.addEventListener('submit', () => void submit(form, async () => (await ctx.api.post<Subscription>('/api/v1/subscriptions', { customer: customer.value.trim(), plan: plan.value, start: utcInput(start.value) }), done())));
  return form;
}

/** Migrate, change plan, cancel and terms of one subscription, each with a preview before saving. */
export function subscriptionActions(ctx: PageContext, s: Subscription, plans: PlanView[], done: () => void): HTMLElement {
  const last = s.phases.at(-1)!;
  const plan = plans.find((p) => p.key === last.plan);
  const id = encodeURIComponent(s.id);
  const at = h('input', { type: 'datetime-local', value: toUtcInput(Date.now()) });
  const version = select((plan?.versions ?? []).map((v) => [String(v.version), `v${v.version} ${v.name}`]), String(plan?.latestVersion ?? 1));
  const target = select(plans.filter((p) => p.currency === plan?.currency).map((p) => [p.key, p.key]), last.plan);
  const overrides = textarea(JSON.stringify(s.overrides ?? {}, null, 2), 5);
  const discounts = textarea(JSON.stringify(s.discounts ?? [], null, 2), 4);
  const result = h('div', { class: 'preview-box' });
  const form = formBox(
    `sub-edit-${s.id}`,
    `Change ${s.id}`,
    field('Effective at (UTC)', 'effectiveAt', at),
    field('Version', 'version', version, `Now on v${last.version ?? 1} of ${last.plan}`),
    field('Plan', 'plan', target),
    field('Overrides', 'overrides', overrides, 'JSON: {"charges": {"calls": <price>}, "baseFee": "40", "minimumCommitment": "100"}'),
    field('Discounts', 'discounts', discounts, 'JSON: [{"type": "percent", "value": "10"}]'),
    result,
  );
  const draft = (kind: string): Record<string, unknown> | null => {
    const effectiveAt = utcInput(at.value);
    if (kind === 'migrate') return { kind, subscription: s.id, version: Number(version.value), effectiveAt };
    if (kind === 'change-plan') return { kind, subscription: s.id, plan: target.value, effectiveAt };
    if (kind === 'cancel') return { kind, subscription: s.id, effectiveAt };
    const o = jsonOf(form, 'overrides', overrides.value);
    const d = o === null ? null : jsonOf(form, 'discounts', discounts.value);
    return d === null ? null : { kind, subscription: s.id, overrides: o, discounts: d };
  };
  const preview = (kind: string) => {
    const b = draft(kind);
    if (b) void submit(form, async () => replace(result, previewView(await ctx.api.post<InvoicePreviews>('/api/v1/invoices/preview', b))));
  };
  const save = (kind: string, path: string) => {
    const b = draft(kind);
    if (!b) return;
    const { kind: _k, subscription: _s, ...rest } = b;
    return submit(form, async () => (await ctx.api.post(`/api/v1/subscriptions/${id}/${path}`, rest), done()));
  };
  const row = (kind: string, label: string, path: string, confirm: boolean) =>
    h(
      'div',
      { class: 'actions', 'data-op': kind },
      h('button', { type: 'button', class: 'btn', 'data-action': `preview-${kind}`, onclick: () => preview(kind) }, `Preview ${label.toLowerCase()}`),
      confirm ? confirmButton(label, `${label.toLowerCase()} ${s.id}`, () => save(kind, path), { 'data-action': kind }) : h('button', { type: 'button', class: 'btn primary', 'data-action': kind, onclick: () => void save(kind, path) }, label),
    );
  form.append(row('migrate', 'Migrate', 'migrate', true), row('change-plan', 'Change plan', 'change-plan', true), row('cancel', 'Cancel', 'cancel', true), row('terms', 'Save terms', 'terms', false));
  return h('details', { class: 'editor' }, h('summary', {}, 'Change'), form);
}
