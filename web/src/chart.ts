import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { axisNumber, toChartNumber } from './format.ts';
import type { UsageRow } from './types.ts';

export const PALETTE = ['#2563eb', '#d97706', '#059669', '#db2777', '#7c3aed', '#0891b2', '#65a30d', '#dc2626'];

const HOUR_S = 3600;

export interface Series {
  label: string;
  color: string;
}

/**
 * Usage windows (one row per window and group value) as uPlot's aligned data: x = window starts
 * (seconds), one series per group value, over every hour or local day of the range. SUM and
 * COUNT are zero where there were no events (no events is zero usage); other aggregations leave a gap.
 */
export function alignUsage(rows: UsageRow[], groupKey: string | null, windowSize: 'HOUR' | 'DAY', zeroFill: boolean, range: { fromMs: number; toMs: number }, timeZone?: string): { data: uPlot.AlignedData; series: Series[] } {
  const labels = [...new Set(rows.map((r) => (groupKey ? (r.groupBy[groupKey] ?? '') : 'total')))].sort();
  const xs = new Set<number>(rows.map((r) => Date.parse(r.windowStart) / 1000));
  // Every window of the range is on the x axis: zero where SUM/COUNT had no events, a gap for the others.
  if (windowSize === 'HOUR') {
    const first = Math.ceil(range.fromMs / 3_600_000) * HOUR_S;
    for (let x = first; x * 1000 < range.toMs; x += HOUR_S) xs.add(x);
  }
  if (windowSize === 'DAY' && timeZone) for (const ms of localMidnights(range.fromMs, range.toMs, timeZone)) xs.add(ms / 1000);
  const x = [...xs].sort((a, b) => a - b);
  const index = new Map(x.map((v, i) => [v, i]));
  const ys = labels.map(() => x.map(() => (zeroFill ? 0 : null)) as (number | null)[]);
  for (const r of rows) {
    const li = labels.indexOf(groupKey ? (r.groupBy[groupKey] ?? '') : 'total');
    const xi = index.get(Date.parse(r.windowStart) / 1000)!;
    ys[li]![xi] = toChartNumber(r.value);
  }
  return { data: [x, ...ys] as uPlot.AlignedData, series: labels.map((label, i) => ({ label: label === '' ? '(none)' : label, color: PALETTE[i % PALETTE.length]! })) };
}

/** Seconds past local midnight of instant `ms` in `tz`. */
function secondsIntoDay(ms: number, tz: string): number {
  const p = new Intl.DateTimeFormat('en-US', { timeZone: tz, hour: 'numeric', minute: 'numeric', second: 'numeric', hourCycle: 'h23' }).formatToParts(new Date(ms));
  const n = (t: string) => Number(p.find((x) => x.type === t)?.value ?? 0);
  return n('hour') * 3600 + n('minute') * 60 + n('second');
}

/** Local midnights in `tz` within [fromMs, toMs), as instants: the day windows to zero-fill (DST-safe). */
export function localMidnights(fromMs: number, toMs: number, tz: string): number[] {
  const out: number[] = [];
  let t = fromMs - secondsIntoDay(fromMs, tz) * 1000;
  if (t < fromMs) t += 26 * 3_600_000;
  for (let guard = 0; guard < 400; guard++) {
    const m = t - secondsIntoDay(t, tz) * 1000;
    if (m >= toMs) break;
    if (m >= fromMs && out.at(-1) !== m) out.push(m);
    t = m + 26 * 3_600_000;
  }
  return out;
}

/** uPlot's default axis font (its `font` option, unset here): what the labels are measured with. */
const AXIS_FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';
const TICK_PX = 10;
const GAP_PX = 5;
/** Room on the left of the widest y label (uPlot draws labels right-aligned against the ticks). */
const PAD_PX = 6;

/**
 * The y axis's width: its widest label, measured in the axis font, plus ticks and gap, so
 * "125,000" is never cut to ",25,000" (uPlot calls this again as the labels change; after two
 * passes it keeps the size it has, which is how its axis-autosize demo converges).
 */
function yAxisSize(self: uPlot, values: string[] | null, axisIdx: number, cycleNum: number): number {
  const axis = self.axes[axisIdx]!;
  if (cycleNum > 1) return (axis as { _size?: number })._size ?? 50;
  const widest = (values ?? []).reduce((a, v) => (v.length > a.length ? v : a), '');
  // Measured at the CSS font size (uPlot scales its own copy of the font by devicePixelRatio to draw).
  self.ctx.font = AXIS_FONT;
  const textPx = widest ? self.ctx.measureText(widest).width : 0;
  return Math.ceil(textPx + TICK_PX + GAP_PX + PAD_PX);
}

/** A responsive uPlot chart in `el`, times shown in `timeZone`. Returns a function that destroys it. */
export function drawChart(el: HTMLElement, data: uPlot.AlignedData, series: Series[], opts: { timeZone: string; windowSize: 'HOUR' | 'DAY'; label: string }): () => void {
  const width = () => Math.max(260, el.clientWidth || 600);
  const height = () => (window.matchMedia('(max-width: 640px)').matches ? 180 : 240);
  // Hours: a step per window (zero-filled). Days: points joined by lines (days without rows are gaps, not zeros).
  const daily = opts.windowSize === 'DAY';
  const stepped = uPlot.paths.stepped!({ align: 1 });
  const u = new uPlot(
    {
      width: width(),
      height: height(),
      title: undefined,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), opts.timeZone),
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [
        { stroke: '#64748b', grid: { stroke: '#e2e8f0' } },
        {
          stroke: '#64748b',
          grid: { stroke: '#e2e8f0' },
          font: AXIS_FONT,
          size: yAxisSize,
          // Grouped like every number on the page; the labels are kept on the element for tests and copy.
          values: (_u, splits) => {
            const labels = splits.map((v) => axisNumber(v));
            el.dataset.yLabels = labels.join('|');
            return labels;
          },
        },
      ],
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, fill: series.length === 1 ? s.color + '1a' : undefined, width: 1.5, ...(daily ? { points: { show: true, size: 6 } } : { paths: stepped, points: { show: false } }) }))],
    },
    data,
    el,
  );
  u.root.setAttribute('role', 'img');
  u.root.setAttribute('aria-label', opts.label);
  const ro = new ResizeObserver(() => u.setSize({ width: width(), height: height() }));
  ro.observe(el);
  return () => {
    ro.disconnect();
    u.destroy();
  };
}
