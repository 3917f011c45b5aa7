import { ApiError } from '../../api.ts';
import { h, note, replace, table } from '../../dom.ts';
import { money } from '../../format.ts';
import type { Invoice, InvoicePreviews } from '../../types.ts';

/**
 * Form pieces of the catalog editor: labelled fields, the API's field errors shown at their
 * field, JSON editing of prices, a two-step confirmation and the invoice preview (before/after).
 * The server validates everything; the hints here only save a round trip.
 */

let seq = 0;
const uid = (p: string) => `${p}-${++seq}`;

/** A labelled input; `name` is the API's field path under `body.` (errors land here). */
export function field(label: string, name: string, control: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement, hint?: string): HTMLElement {
  const id = control.id || uid('f');
  control.id = id;
  control.name = name;
  const err = h('p', { class: 'hint field-error', id: `${id}-err`, hidden: true, role: 'alert' });
  const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null;
  control.setAttribute('aria-describedby', [hintEl ? `${id}-hint` : '', `${id}-err`].filter(Boolean).join(' '));
  return h('div', { class: 'field', 'data-field': name }, h('label', { for: id }, label), control, hintEl, err);
}

export const input = (attrs: Record<string, string | boolean> = {}) => h('input', { type: 'text', autocomplete: 'off', ...attrs });
export const textarea = (value: string, rows = 8) => {
  const t = h('textarea', { rows, spellcheck: 'false', class: 'mono' });
  t.value = value;
  return t;
};
export const select = (options: [string, string][], value?: string) => {
  const s = h('select', {}, options.map(([v, l]) => h('option', { value: v }, l)));
  if (value !== undefined) s.value = value;
  return s;
};

/** "2026-10-01T00:00" (a datetime-local value, read as UTC) as RFC 3339. */
export const utcInput = (v: string) => (v ? `${v.length === 16 ? `${v}:00` : v}Z` : '');
export const toUtcInput = (ms: number) => new Date(ms).toISOString().slice(0, 16);

/** Parses a JSON text field; a syntax error is shown at the field (and null returned). */
export function jsonOf(form: HTMLElement, name: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    showErrors(form, [{ field: `body.${name}`, reason: `not valid JSON: ${(e as Error).message}` }]);
    return null;
  }
}

/** The API's "invalid body: body.x: reason; body.y: reason" as field errors (other errors: one without a field). */
export function fieldErrors(err: unknown): { field: string; reason: string }[] {
  const msg = err instanceof Error ? err.message : String(err);
  const m = /^invalid (?:body|query): (.*)$/s.exec(msg);
  if (!m) return [{ field: '', reason: msg }];
  return m[1]!.split(/; (?=(?:body|query)\.)/).map((part) => {
    const i = part.indexOf(': ');
    return { field: part.slice(0, i), reason: part.slice(i + 2) };
  });
}

/**
 * Shows each error at the field whose name is the longest prefix of the error's path
 * (`body.charges.0.price.tiers.1.upTo` lands on the charges JSON field), the rest in the form's
 * summary. Clears earlier errors first.
 */
export function showErrors(form: HTMLElement, errors: { field: string; reason: string }[]): void {
  clearErrors(form);
  const fields = [...form.querySelectorAll<HTMLElement>('[data-field]')];
  const summary = form.querySelector<HTMLElement>('.form-errors')!;
  const rest: string[] = [];
  for (const e of errors) {
    const path = e.field.replace(/^body\.(plan\.)?/, ''); // a preview's draft plan is under body.plan
    const f = fields.filter((x) => path === x.dataset.field || path.startsWith(`${x.dataset.field}.`)).sort((a, b) => b.dataset.field!.length - a.dataset.field!.length)[0];
    if (!f) {
      rest.push(e.field ? `${e.field}: ${e.reason}` : e.reason);
      continue;
    }
    const errEl = f.querySelector<HTMLElement>('.field-error')!;
    errEl.hidden = false;
    errEl.textContent = [errEl.textContent, `${e.field}: ${e.reason}`].filter(Boolean).join('\n');
    f.querySelector('input, select, textarea')?.setAttribute('aria-invalid', 'true');
  }
  replace(summary, rest.length ? note(rest.join('\n'), 'error') : null);
}

export function clearErrors(form: HTMLElement): void {
  for (const e of form.querySelectorAll<HTMLElement>('.field-error')) {
    e.hidden = true;
    e.textContent = '';
  }
  for (const e of form.querySelectorAll('[aria-invalid]')) e.removeAttribute('aria-invalid');
  const s = form.querySelector('.form-errors');
  if (s) replace(s);
}

/** A form card: fields, error summary, a result area and buttons. `id` names it for tests and labels. */
export function formBox(id: string, title: string, ...children: (HTMLElement | string | null)[]): HTMLElement {
  return h('form', { class: 'card edit-form', id, 'aria-label': title, novalidate: true, onsubmit: (e: Event) => e.preventDefault() }, h('h3', {}, title), ...children, h('div', { class: 'form-errors', 'aria-live': 'polite' }));
}

/** Runs `action` with the form's errors cleared and its buttons disabled; an API error is shown at its fields. */
export async function submit<T>(form: HTMLElement, action: () => Promise<T>): Promise<T | undefined> {
  clearErrors(form);
  const buttons = [...form.querySelectorAll('button')];
  for (const b of buttons) b.disabled = true;
  try {
    return await action();
  } catch (err) {
    showErrors(form, err instanceof ApiError && err.status === 403 ? [{ field: '', reason: `Your key may not do this: ${err.message}` }] : fieldErrors(err));
    return undefined;
  } finally {
    for (const b of buttons) b.disabled = false;
  }
}

/**
 * A button that asks before acting: the first press turns it into "Confirm: …" (and offers
 * Keep), the second runs `action`. Used for migrate, cancel and delete.
 */
export function confirmButton(label: string, question: string, action: () => void | Promise<void>, attrs: Record<string, string> = {}): HTMLElement {
  const wrap = h('span', { class: 'confirm' });
  const first = h('button', { type: 'button', class: 'btn', ...attrs }, label);
  const reset = () => replace(wrap, first);
  first.addEventListener('click', () => {
    const yes = h('button', { type: 'button', class: 'btn primary', 'data-confirm': attrs['data-action'] ?? label }, `Confirm: ${question}`);
    const no = h('button', { type: 'button', class: 'btn' }, 'Keep');
    yes.addEventListener('click', () => void Promise.resolve(action()).finally(reset));
    no.addEventListener('click', reset);
    replace(wrap, yes, ' ', no);
    yes.focus();
  });
  reset();
  return wrap;
}

const lineRows = (inv: Invoice) =>
  inv.lines.map((l) => h('tr', { 'data-kind': l.kind }, h('td', {}, l.description), h('td', { class: 'num', 'data-value': l.quantity }, l.quantity), h('td', { class: 'num', 'data-value': l.amount }, money(l.amount, inv.currency))));

function invoiceTable(title: string, inv: Invoice, side: string): HTMLElement {
  return h(
    'div',
    { class: 'preview-side', 'data-side': side },
    h('h4', {}, title),
    table(['Line', h('th', { scope: 'col', class: 'num' }, 'Quantity'), h('th', { scope: 'col', class: 'num' }, 'Amount')], [...lineRows(inv), h('tr', { class: 'total-row' }, h('th', { scope: 'row', colspan: '2' }, 'Total'), h('td', { class: 'num', 'data-value': inv.total, 'data-total': side }, money(inv.total, inv.currency)))]),
  );
}

/** The preview: per affected subscription, this period's invoice now and with the change, and the difference. */
export function previewView(p: InvoicePreviews): HTMLElement {
  if (p.items.length === 0) return note('No subscription is affected now: nothing to preview (new subscriptions get the change).');
  return h(
    'div',
    { class: 'preview', 'aria-live': 'polite' },
    h('p', { class: 'muted small' }, `This period's invoices with usage up to ${p.asOf.slice(0, 16).replace('T', ' ')} UTC. Nothing is saved yet.`),
    p.items.map((i) =>
      h(
        'section',
        { class: 'preview-item', 'data-preview': i.subscription },
        h('h4', {}, `${i.subscription} · ${i.customer} · ${i.periodStart.slice(0, 10)} – ${i.periodEnd.slice(0, 10)}`),
        h('div', { class: 'preview-grid' }, invoiceTable('Now', i.before, 'before'), invoiceTable('With the change', i.after, 'after')),
        h('p', { class: 'strong', 'data-difference': i.difference }, `Difference: ${i.difference.startsWith('-') ? '−' + money(i.difference.slice(1), i.after.currency) : '+' + money(i.difference, i.after.currency)}`),
      ),
    ),
  );
}
