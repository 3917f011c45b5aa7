import { alignUsage, drawChart, PALETTE } from './chart.ts';
import { badge, h, note, num, replace, table } from './dom.ts';
import { dateTime, money, percent, period, quantity, unitPrice } from './format.ts';
import type { Query } from './api.ts';
import type { Anomaly, Invoice, InvoiceHead, InvoiceLine, Projected, UsageResult } from './types.ts';

export interface MeterInfo {
  slug: string;
  name: string;
  aggregation: string;
  groupBy: string[];
}

export interface UsagePanelOptions {
  meters: MeterInfo[];
  /** Usage of one meter for this customer (the dashboard adds `subject`; the portal's route knows it from the token). */
  query: (meter: string, q: Query) => Promise<UsageResult>;
  timeZone: string;
  periodStart: string;
  /** Prefix for element ids, unique per page. */
  idPrefix: string;
}

/** Cleanups of a page: charts, timers. */
export type Cleanup = () => void;

/**
 * A quantity cell: rounded and grouped for reading (`maxDecimals`, see format.quantity), the
 * exact decimal string in data-value and, when rounding changed it, in the tooltip.
 */
export function qty(value: string, maxDecimals?: number, attrs: Record<string, string> = {}): HTMLTableCellElement {
  const shown = quantity(value, maxDecimals);
  return num(value, shown, { ...(shown.replace(/,/g, '') !== value ? { title: value } : {}), ...attrs });
}

/** A money cell: the amount in the currency's minor unit, the exact string in data-value. */
export function amount(value: string, currency: string, attrs: Record<string, string> = {}): HTMLTableCellElement {
  return num(value, money(value, currency), attrs);
}

const MINUTE = 60_000;
const HOUR = 3_600_000;

/**
 * Usage per meter as charts (by hour or by day, split by one group-by dimension) with a totals
 * table beside each chart. The totals are the API's own totals for the same range (a query
 * without windows), so they are exact for every aggregation (a unique count is not the sum of
 * its hours); the chart draws the windows.
 */
export function usagePanel(opts: UsagePanelOptions): { el: HTMLElement; cleanup: Cleanup } {
  const cleanups: Cleanup[] = [];
  const rangeSel = h('select', { id: `${opts.idPrefix}-range` }, h('option', { value: 'period' }, 'This billing period'), h('option', { value: '7d' }, 'Last 7 days'), h('option', { value: '30d' }, 'Last 30 days'));
  const windowSel = h('select', { id: `${opts.idPrefix}-window` }, h('option', { value: 'HOUR' }, 'By hour'), h('option', { value: 'DAY' }, 'By day'));
  const charts = h('div', { class: 'meters' });
  const rangeNote = h('p', { class: 'muted small', 'aria-live': 'polite' });
  const groupSel = new Map<string, HTMLSelectElement>();

  const range = () => {
    const now = Date.now();
    const toMs = Math.ceil(now / MINUTE) * MINUTE;
    const r = rangeSel.value;
    const fromMs = r === 'period' ? Date.parse(opts.periodStart) : Math.floor(now / HOUR) * HOUR - (r === '7d' ? 7 : 30) * 24 * HOUR;
    return { fromMs, toMs };
  };

  const renderMeter = async (m: MeterInfo, box: HTMLElement) => {
    const { fromMs, toMs } = range();
    const from = new Date(fromMs).toISOString();
    const to = new Date(toMs).toISOString();
    const windowSize = windowSel.value as 'HOUR' | 'DAY';
    const g = groupSel.get(m.slug)?.value ?? '';
    box.dataset.from = from;
    box.dataset.to = to;
    const chartEl = h('div', { class: 'chart' });
    const totalsEl = h('div', { class: 'totals' });
    replace(box.querySelector('.meter-body')!, chartEl, totalsEl);
    try {
      const common = { from, to, windowTimeZone: opts.timeZone };
      const [windows, byGroup, overall] = await Promise.all([
        opts.query(m.slug, { ...common, windowSize, ...(g ? { groupBy: g } : {}) }),
        g ? opts.query(m.slug, { ...common, groupBy: g }) : Promise.resolve(undefined),
        opts.query(m.slug, common),
      ]);
      const zeroFill = m.aggregation === 'SUM' || m.aggregation === 'COUNT';
      const { data, series } = alignUsage(windows.data, g || null, windowSize, zeroFill, { fromMs, toMs }, opts.timeZone);
      if ((data[0] as number[]).length === 0) chartEl.append(note('No usage in this range.'));
      else cleanups.push(drawChart(chartEl, data, series, { timeZone: opts.timeZone, windowSize, label: `${m.name} ${windowSize === 'HOUR' ? 'by hour' : 'by day'}${g ? `, by ${g}` : ''}` }));
      const total = overall.data[0]?.value ?? '0';
      const rows: HTMLTableRowElement[] = [];
      if (byGroup) {
        const labels = series.map((s) => s.label);
        const sorted = [...byGroup.data].sort((a, b) => (a.groupBy[g] ?? '').localeCompare(b.groupBy[g] ?? ''));
        for (const r of sorted) {
          const label = r.groupBy[g] || '(none)';
          const color = PALETTE[labels.indexOf(label) % PALETTE.length] ?? PALETTE[0]!;
          rows.push(h('tr', { 'data-group': label }, h('th', { scope: 'row' }, h('span', { class: 'swatch', style: `background:${color}`, 'aria-hidden': 'true' }), label), qty(r.value)));
        }
      }
      rows.push(h('tr', { class: 'total-row', 'data-group': '' }, h('th', { scope: 'row' }, 'Total'), qty(total)));
      replace(totalsEl, table([g || 'All usage', m.aggregation === 'COUNT' || m.aggregation === 'SUM' ? 'Total' : m.aggregation.replace('_', ' ').toLowerCase()], rows, { class: 'totals-table', 'data-meter': m.slug, 'aria-label': `${m.name} totals` }));
    } catch (err) {
      replace(totalsEl, note((err as Error).message, 'error'));
    }
  };

  const boxes = opts.meters.map((m) => {
    const gid = `${opts.idPrefix}-g-${m.slug}`;
    const sel = h('select', { id: gid }, h('option', { value: '' }, 'No breakdown'), m.groupBy.map((k) => h('option', { value: k }, `By ${k}`)));
    groupSel.set(m.slug, sel);
    const box = h(
      'article',
      { class: 'meter', 'data-meter': m.slug },
      h('header', { class: 'meter-head' }, h('h3', {}, m.name, ' ', h('span', { class: 'muted small' }, `${m.slug} · ${m.aggregation}`)), m.groupBy.length > 0 ? h('div', { class: 'field inline' }, h('label', { for: gid }, 'Breakdown'), sel) : null),
      h('div', { class: 'meter-body' }),
    );
    sel.addEventListener('change', () => void renderMeter(m, box));
    return { m, box };
  });
  const renderAll = () => {
    while (cleanups.length) cleanups.pop()!();
    const { fromMs, toMs } = range();
    rangeNote.textContent = `${dateTime(new Date(fromMs).toISOString(), opts.timeZone)} to ${dateTime(new Date(toMs).toISOString(), opts.timeZone)} (${opts.timeZone})`;
    return Promise.all(boxes.map(({ m, box }) => renderMeter(m, box)));
  };
  rangeSel.addEventListener('change', () => void renderAll());
  windowSel.addEventListener('change', () => void renderAll());
  replace(charts, boxes.map((b) => b.box));
  if (opts.meters.length === 0) charts.append(note('No meters yet.'));
  void renderAll();

  const el = h(
    'div',
    {},
    h('div', { class: 'toolbar' }, h('div', { class: 'field inline' }, h('label', { for: rangeSel.id }, 'Range'), rangeSel), h('div', { class: 'field inline' }, h('label', { for: windowSel.id }, 'Windows'), windowSel)),
    rangeNote,
    charts,
  );
  return { el, cleanup: () => cleanups.forEach((c) => c()) };
}

/** Invoice lines with their tier-by-tier breakdown (a sub-table under each line that has one). */
export function linesTable(inv: Invoice, timeZone: string): HTMLElement {
  const rows: HTMLTableRowElement[] = [];
  for (const l of inv.lines) {
    rows.push(
      h('tr', { 'data-line': l.id, 'data-kind': l.kind }, h('td', {}, l.description, l.kind === 'correction' ? h('div', { class: 'muted small' }, `for ${period(l.periodStart, l.periodEnd, timeZone)}`) : null), qty(l.quantity, undefined, { 'data-label': 'Quantity' }), num(l.unitPrice ?? '', l.unitPrice ? unitPrice(l.unitPrice, inv.currency) : '—', { 'data-label': 'Unit price' }), amount(l.amount, inv.currency, { 'data-label': 'Amount' })),
    );
    if (l.breakdown.length > 0 && (l.breakdown.length > 1 || l.breakdown[0]!.tier)) rows.push(breakdownRow(l, inv.currency));
  }
  const totalRow = h('tr', { class: 'total-row' }, h('th', { scope: 'row', colspan: '3' }, 'Total'), num(inv.total, money(inv.total, inv.currency), { 'data-total': inv.total, 'data-label': 'Amount' }));
  return h(
    'div',
    { class: 'table-wrap' },
    h('table', { class: 'lines stack' }, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Line'), h('th', { scope: 'col', class: 'num' }, 'Quantity'), h('th', { scope: 'col', class: 'num' }, 'Unit price'), h('th', { scope: 'col', class: 'num' }, 'Amount'))), h('tbody', {}, rows), h('tfoot', {}, totalRow)),
  );
}

function breakdownRow(l: InvoiceLine, currency: string): HTMLTableRowElement {
  const inner = h(
    'table',
    { class: 'breakdown stack', 'aria-label': `Breakdown of ${l.description}` },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Tier'), h('th', { scope: 'col', class: 'num' }, 'Units'), h('th', { scope: 'col', class: 'num' }, 'Unit price'), h('th', { scope: 'col', class: 'num' }, 'Flat fee'), h('th', { scope: 'col', class: 'num' }, 'Amount'))),
    h(
      'tbody',
      {},
      l.breakdown.map((b) => h('tr', {}, h('td', {}, [b.tier ? `Tier ${b.tier}` : b.description, b.dimensionValue ? ` (${b.dimensionValue})` : ''].join('')), qty(b.units, undefined, { 'data-label': 'Units' }), num(b.unitPrice ?? '', b.unitPrice ? unitPrice(b.unitPrice, currency) : '—', { 'data-label': 'Unit price' }), num(b.flatFee ?? '', b.flatFee ? money(b.flatFee, currency) : '—', { 'data-label': 'Flat fee' }), amount(b.amount, currency, { 'data-label': 'Amount' }))),
    ),
  );
  return h('tr', { class: 'breakdown-row' }, h('td', { colspan: '4' }, inner));
}

/** Projected quantities are an extrapolation: two decimals are all the precision they have. */
const PROJECTED_DECIMALS = 2;
/** Labels of the projected table's cells, shown beside each number when the table stacks on a phone. */
const L = { qtySoFar: { 'data-label': 'Quantity so far' }, soFar: { 'data-label': 'Amount so far' }, qtyProjected: { 'data-label': 'Projected quantity' }, projected: { 'data-label': 'Projected amount' } };

/** The projected invoice: lines so far and projected to the period end, side by side. */
export function projectedView(p: Projected, timeZone: string): HTMLElement {
  if (p.subscriptions.length === 0) return note('No active subscription: nothing to project.');
  return h(
    'div',
    {},
    p.subscriptions.map((s) => {
      const soFar = new Map(s.soFar.lines.map((l) => [l.id, l]));
      const rows = s.projected.lines.map((l) => {
        const now = soFar.get(l.id);
        return h('tr', { 'data-line': l.id, 'data-kind': l.kind }, h('td', {}, l.description), now ? qty(now.quantity, undefined, L.qtySoFar) : num('', '—', L.qtySoFar), now ? amount(now.amount, s.currency, L.soFar) : num('', '—', L.soFar), qty(l.quantity, PROJECTED_DECIMALS, L.qtyProjected), amount(l.amount, s.currency, L.projected));
      });
      // Lines that exist so far but not in the projection (rare) still show.
      for (const l of s.soFar.lines) if (!s.projected.lines.some((x) => x.id === l.id)) rows.push(h('tr', { 'data-line': l.id, 'data-kind': l.kind }, h('td', {}, l.description), qty(l.quantity, undefined, L.qtySoFar), amount(l.amount, s.currency, L.soFar), num('', '—', L.qtyProjected), num('', '—', L.projected)));
      return h(
        'div',
        { class: 'projected', 'data-period-start': s.periodStart },
        h(
          'dl',
          { class: 'stats' },
          h('div', {}, h('dt', {}, 'Period'), h('dd', {}, period(s.periodStart, s.periodEnd, timeZone))),
          h('div', {}, h('dt', {}, 'Elapsed'), h('dd', {}, percent(s.elapsedShare))),
          h('div', {}, h('dt', {}, 'So far'), h('dd', { class: 'amount', 'data-value': s.amountSoFar, 'data-testid': 'so-far' }, money(s.amountSoFar, s.currency))),
          h('div', {}, h('dt', {}, 'Projected'), h('dd', { class: 'amount strong', 'data-value': s.projectedTotal, 'data-testid': 'projected-total' }, money(s.projectedTotal, s.currency))),
        ),
        h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'lines stack' },
            h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Line'), h('th', { scope: 'col', class: 'num' }, 'Quantity so far'), h('th', { scope: 'col', class: 'num' }, 'Amount so far'), h('th', { scope: 'col', class: 'num' }, 'Projected quantity'), h('th', { scope: 'col', class: 'num' }, 'Projected amount'))),
            h('tbody', {}, rows),
            h('tfoot', {}, h('tr', { class: 'total-row' }, h('th', { scope: 'row' }, 'Total'), h('td', {}), amount(s.amountSoFar, s.currency, L.soFar), h('td', {}), amount(s.projectedTotal, s.currency, L.projected))),
          ),
        ),
      );
    }),
  );
}

/** Invoices, newest first, each expandable to its lines and tier breakdown (fetched when opened). */
export function invoicesView(items: InvoiceHead[], fetchOne: (id: string) => Promise<Invoice>, timeZone: string): HTMLElement {
  if (items.length === 0) return note('No invoices yet.');
  const sorted = [...items].sort((a, b) => b.periodStart.localeCompare(a.periodStart));
  return h(
    'ul',
    { class: 'invoices' },
    sorted.map((inv) => {
      const body = h('div', { class: 'invoice-body' }, h('p', { class: 'muted' }, 'Loading…'));
      const d = h(
        'details',
        { class: 'invoice', 'data-invoice': inv.id },
        h(
          'summary',
          {},
          h('span', { class: 'inv-number' }, inv.number ?? 'Draft'),
          h('span', { class: 'inv-period' }, period(inv.periodStart, inv.periodEnd, timeZone)),
          badge(inv.status, inv.status === 'finalized' ? 'ok' : 'info'),
          h('span', { class: 'inv-total num', 'data-value': inv.total }, money(inv.total, inv.currency)),
        ),
        body,
      );
      let loaded = false;
      d.addEventListener('toggle', () => {
        if (!d.open || loaded) return;
        loaded = true;
        fetchOne(inv.id).then(
          (full) => replace(body, full.issuedAt ? h('p', { class: 'muted small' }, `Issued ${dateTime(full.issuedAt, timeZone)} · cutoff ${dateTime(full.cutoff, timeZone)}`) : null, linesTable(full, timeZone)),
          (err: Error) => {
            loaded = false;
            replace(body, note(err.message, 'error'));
          },
        );
      });
      return h('li', {}, d);
    }),
  );
}

export const SEVERITY_KIND: Record<string, string> = { critical: 'bad', warning: 'warn', info: 'info' };

/** Anomalies; `actions` adds buttons to a row (the dashboard's acknowledge/resolve for admins). */
export function anomaliesView(items: Anomaly[], timeZone: string, actions?: (a: Anomaly) => HTMLElement | null): HTMLElement {
  if (items.length === 0) return note('No anomalies.');
  return table(
    ['Severity', 'What happened', 'When', 'Status', ...(actions ? ['Actions'] : [])],
    items.map((a) =>
      h(
        'tr',
        { 'data-anomaly': a.id, 'data-status': a.status },
        h('td', {}, badge(a.severity, SEVERITY_KIND[a.severity] ?? 'info'), h('div', { class: 'muted small' }, a.kind.replace('_', ' '))),
        h('td', {}, a.message, a.meter ? h('div', { class: 'muted small' }, a.meter) : null, a.resolutionNote ? h('div', { class: 'muted small' }, `Note: ${a.resolutionNote}`) : null),
        h('td', { class: 'nowrap', 'data-label': 'When' }, dateTime(a.windowStart, timeZone)),
        h('td', { 'data-label': 'Status' }, badge(a.status, a.status === 'resolved' ? 'ok' : a.status === 'acknowledged' ? 'info' : 'warn')),
        actions ? h('td', {}, actions(a)) : null,
      ),
    ),
    { class: 'anomalies stack' },
  );
}
