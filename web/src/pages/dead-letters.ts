import { ApiError } from '../api.ts';
import type { Page } from '../context.ts';
import { h, note, replace } from '../dom.ts';
import { dateTime, quantity } from '../format.ts';
import type { DeadLetter, DeadLetters, Redriven } from '../types.ts';

/** Events accepted but not counted, with the reason; admins re-drive one once the cause is fixed. */
export const deadLettersPage: Page = (ctx) => {
  ctx.title('Dead letters');
  const list = h('div', {});
  const more = h('button', { type: 'button', class: 'btn', hidden: true }, 'Load more');
  const count = h('p', { class: 'muted' });
  replace(
    ctx.main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Dead letters'), count),
    ctx.can('admin') ? h('p', { class: 'muted small' }, 'Fix the cause (e.g. the meter or the producer), then re-drive: the event goes through processing again, with the same dedup.') : note('Read-only: re-driving needs the admin scope.'),
    list,
    more,
  );
  const tbody = h('tbody', {});
  let after: number | undefined;
  const row = (d: DeadLetter) => {
    let ev: { id?: string; type?: string; subject?: string } = {};
    try {
      ev = JSON.parse(d.event) as typeof ev;
    } catch {
      /* shown raw */
    }
    const status = h('span', { class: 'small', role: 'status' });
    const redrive = ctx.can('admin')
      ? h('button', {
          type: 'button',
          class: 'btn',
          onclick: async (e: Event) => {
            const b = e.currentTarget as HTMLButtonElement;
            b.disabled = true;
            try {
              const r = await ctx.api.post<Redriven>(`/api/v1/dead-letters/${d.seq}/redrive`);
              status.textContent = `Re-driven (stream seq ${r.streamSeq})`;
              b.remove();
            } catch (err) {
              status.textContent = (err as Error).message;
              b.disabled = false;
            }
          },
        }, 'Re-drive')
      : null;
    return h(
      'tr',
      { 'data-seq': String(d.seq) },
      h('td', { class: 'num' }, String(d.seq)),
      h('td', { class: 'nowrap' }, dateTime(d.deadLetteredAt, Intl.DateTimeFormat().resolvedOptions().timeZone)),
      h('td', {}, h('div', { class: 'reason' }, d.reason), h('details', {}, h('summary', {}, [ev.type, ev.subject, ev.id].filter(Boolean).join(' · ') || 'event'), h('pre', { class: 'event' }, prettyJson(d.event)))),
      h('td', {}, redrive, status),
    );
  };
  const load = async () => {
    try {
      const r = await ctx.api.get<DeadLetters>('/api/v1/dead-letters', { limit: '50', ...(after !== undefined ? { afterSeq: String(after) } : {}) });
      count.textContent = `${quantity(String(r.total))} dead letter${r.total === 1 ? '' : 's'}`;
      if (after === undefined) {
        if (r.items.length === 0) return replace(list, note('No dead letters: every accepted event was counted.'));
        replace(list, h('div', { class: 'table-wrap' }, h('table', { class: 'dead-letters' }, h('thead', {}, h('tr', {}, ['Seq', 'When', 'Reason and event', 'Action'].map((x) => h('th', { scope: 'col' }, x)))), tbody)));
      }
      r.items.forEach((d) => tbody.append(row(d)));
      after = r.nextAfterSeq ?? r.items.at(-1)?.seq;
      more.hidden = r.items.length < 50;
    } catch (err) {
      replace(list, note((err as Error).message, err instanceof ApiError && err.status === 403 ? 'warn' : 'error'));
    }
  };
  more.addEventListener('click', () => void load());
  void load();
};

function prettyJson(s: string): string {
  try {
    return JSON.stringify(JSON.parse(s), null, 2);
  } catch {
    return s;
  }
}
