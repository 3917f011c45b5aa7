import { Decimal } from '../common/decimal.ts';
import type { Customer, Discount, Plan, Subscription } from './catalog.ts';
import { lineSource, type Invoice, type InvoiceLine, type LineKind, type LineSource } from './invoice-types.ts';
import { daysBetween, localParts, overlap, type Period } from './periods.ts';
import { rate, roundMoney, toMinor } from './pricing/index.ts';
import type { BreakdownRow, Price, RateInput } from './pricing/types.ts';

/**
 * Builds an invoice from a subscription, its plans and the usage of the period. Pure: usage
 * is handed in, `now` is not needed. The order of lines and the conventions:
 *
 * 1. Base fees. Arrears fees are charged for the part of the period each plan was in force
 *    (prorated to the second). Advance fees are charged for the next period on this invoice
 *    (and for this period too on a subscription's first invoice); a plan change at `t` during
 *    the period credits the unused part of the old plan's advance fee and charges the new
 *    plan's fee for the rest of the period, both prorated to the second (as Stripe does), or
 *    by whole days in the customer's zone for a plan with `proration: "day"` (as Lago does).
 * 2. Usage, one line per charge and per price in force: consecutive phases with the same
 *    effective price are rated together over their union, so splitting a period into two
 *    phases of the same plan gives the same amount as the whole period.
 * 3. Line discounts (on a charge's usage), then the minimum-commitment true-up (the minimum,
 *    prorated to the active part of the period, less the usage lines), then invoice discounts.
 * 4. Adjustments (one-time credits), corrections of earlier periods, then prepaid credits,
 *    which draw the total down to zero at most (earliest-expiring grant first).
 *
 * Every line is rounded once, to the currency's minor unit (half-up unless configured); the
 * total is the sum of the rounded lines.
 */
export type RoundingMode = 'half_up' | 'half_even' | 'down' | 'up';

export interface UsageGroup {
  /** Stable key of the group: charge key plus the price's index among that charge's prices. */
  id: string;
  chargeKey: string;
  meter: string;
  description: string;
  price: Price;
  plans: string[];
  ranges: Period[];
}

/** Usage groups of a period: one per charge and distinct effective price, over the ranges it was in force. */
export function usageGroups(sub: Subscription, plans: Record<string, Plan>, period: Period): UsageGroup[] {
  const groups: UsageGroup[] = [];
  const priceIndex = new Map<string, number>();
  for (const phase of sub.phases) {
    const range = overlap(period, { start: Date.parse(phase.start), end: phase.end ? Date.parse(phase.end) : Number.MAX_SAFE_INTEGER });
    if (!range) continue;
    const plan = plans[phase.plan];
    if (!plan) throw new Error(`plan "${phase.plan}" of subscription ${sub.id} does not exist`);
    for (const charge of plan.charges) {
      const price = sub.overrides?.charges?.[charge.key] ?? charge.price;
      const sig = `${charge.key}\u0000${charge.meter}\u0000${JSON.stringify(price)}`;
      const existing = groups.find((g) => `${g.chargeKey}\u0000${g.meter}\u0000${JSON.stringify(g.price)}` === sig);
      if (existing) {
        const last = existing.ranges.at(-1)!;
        if (last.end === range.start) last.end = range.end;
        else existing.ranges.push({ ...range });
        if (!existing.plans.includes(plan.key)) existing.plans.push(plan.key);
        continue;
      }
      const n = priceIndex.get(charge.key) ?? 0;
      priceIndex.set(charge.key, n + 1);
      groups.push({ id: n === 0 ? charge.key : `${charge.key}#${n + 1}`, chargeKey: charge.key, meter: charge.meter, description: `${charge.description ?? charge.key} (${plan.name})`, price, plans: [plan.key], ranges: [{ ...range }] });
    }
  }
  return groups;
}

export interface CreditGrant {
  id: string;
  amount: string;
  /** Already drawn by finalized invoices. */
  drawn: string;
  expiresAtMs?: number;
  createdAtMs: number;
}

export interface OneTimeAdjustment {
  id: string;
  description: string;
  /** Signed amount in the currency: negative credits the customer. */
  amount: string;
}

export interface CorrectionLine {
  /** The earlier period it corrects. */
  period: Period;
  meter: string;
  chargeKey: string;
  quantityDelta: string;
  /** Exact difference between the period priced with and without the late usage. */
  amountDelta: string;
  breakdown: BreakdownRow[];
}

export interface BuildInput {
  invoiceId: string;
  customer: Customer;
  subscription: Subscription;
  plans: Record<string, Plan>;
  period: Period;
  /** True for the subscription's first period: its own advance fee is billed on this invoice. */
  firstPeriod: boolean;
  /** The next period, if the subscription continues into it (its advance fee is billed now). */
  nextPeriod?: Period;
  /** Usage per group id, measured at the invoice's cutoff. */
  usage: Record<string, RateInput>;
  cutoffMs: number;
  rounding?: RoundingMode;
  adjustments?: OneTimeAdjustment[];
  corrections?: CorrectionLine[];
  credits?: CreditGrant[];
}

const iso = (ms: number) => new Date(ms).toISOString();

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
/**
 * An instant as a customer reads it on an invoice line, in their zone: "Nov 14, 2026" at local
 * midnight (where plan changes usually fall), else "Nov 21, 2026, 01:17 (America/New_York)".
 */
export function describeInstant(ms: number, timeZone: string): string {
  const p = localParts(ms, timeZone);
  const day = `${MONTHS[p.m]} ${p.d}, ${p.y}`;
  if (p.hh === 0 && p.mm === 0 && p.ss === 0) return day;
  const two = (n: number) => String(n).padStart(2, '0');
  return `${day}, ${two(p.hh)}:${two(p.mm)} (${timeZone})`;
}
const D = (s: string | number) => new Decimal(s);

/** Decimal places of a proration share (the fraction of a period a fee or minimum covers). */
export const SHARE_DECIMALS = 20;

export function buildInvoice(input: BuildInput): Invoice {
  const { customer, subscription: sub, plans, period } = input;
  const currency = customer.currency;
  const mode = input.rounding ?? 'half_up';
  const lines: InvoiceLine[] = [];
  // `source` says in data what `key` says in the id; the id stays as it always was (it keys Stripe items).
  const add = (kind: LineKind, key: string, source: LineSource, l: Omit<InvoiceLine, 'id' | 'kind' | 'amount' | 'amountMinor' | 'source'> & { exact: string }) => {
    const amount = roundMoney(l.exact, currency, mode);
    const { exact: _e, ...rest } = l;
    const line: InvoiceLine = { id: `${input.invoiceId}:${kind}:${key}`, kind, ...rest, amount, amountMinor: toMinor(amount, currency), source };
    lines.push(line);
    return line;
  };
  const phases = sub.phases.map((p) => ({ plan: plans[p.plan]!, start: Date.parse(p.start), end: p.end ? Date.parse(p.end) : Number.MAX_SAFE_INTEGER }));
  for (const p of phases) if (!p.plan) throw new Error(`subscription ${sub.id} refers to a plan that does not exist`);
  const feeOf = (plan: Plan) => D(sub.overrides?.baseFee ?? plan.baseFee?.amount ?? '0');
  // A share of a period is a quotient of milliseconds, usually without an end: it is kept to 20
  // decimal places (half-up), so a breakdown shows a readable share and the amount it gives exactly.
  // A plan with `proration: "day"` counts whole days in the customer's zone instead (periods.ts daysBetween).
  const share = (from: number, to: number, of: Period = period, proration: Plan['proration'] = 'second') =>
    (proration === 'day' ? D(daysBetween(from, to, customer.timeZone)).div(daysBetween(of.start, of.end, customer.timeZone)) : D(to - from).div(of.end - of.start)).toDecimalPlaces(SHARE_DECIMALS, Decimal.ROUND_HALF_UP);
  const fraction = (s: Decimal) => ({ description: `prorated ${s.mul(100).toDecimalPlaces(4).toFixed()}% of the period`, units: s.toFixed(), unitPrice: undefined });

  // 1. Base fees.
  const firstPhase = phases.findIndex((q) => overlap(period, q));
  for (const [i, p] of phases.entries()) {
    if (!p.plan.baseFee) continue;
    const r = overlap(period, p);
    const fee = feeOf(p.plan);
    if (p.plan.baseFee.timing === 'arrears') {
      if (!r) continue;
      const s = share(r.start, r.end, period, p.plan.proration);
      const exact = fee.mul(s);
      add('base_fee', `arrears:${i}`, { kind: 'base_fee', timing: 'arrears', phase: i }, {
        description: `${p.plan.name} base fee${s.eq(1) ? '' : ' (prorated)'}`,
        periodStart: iso(r.start),
        periodEnd: iso(r.end),
        quantity: s.toFixed(),
        unitPrice: fee.toFixed(),
        breakdown: [{ ...fraction(s), unitPrice: fee.toFixed(), amount: exact.toFixed() }],
        exact: exact.toFixed(),
      });
      continue;
    }
    // Advance: this period's fee on the subscription's first invoice (nothing billed it before),
    // from the start of the first phase; later changes in the period are prorated below.
    if (input.firstPeriod && r && i === firstPhase) {
      const s = share(r.start, period.end, period, p.plan.proration);
      const exact = fee.mul(s);
      add('base_fee', `advance-current:${i}`, { kind: 'base_fee', timing: 'advance-current', phase: i }, {
        description: `${p.plan.name} base fee, in advance${s.eq(1) ? '' : ' (prorated)'}`,
        periodStart: iso(r.start),
        periodEnd: iso(period.end),
        quantity: s.toFixed(),
        unitPrice: fee.toFixed(),
        breakdown: [{ ...fraction(s), unitPrice: fee.toFixed(), amount: exact.toFixed() }],
        exact: exact.toFixed(),
      });
    }
  }
  // Plan changes and cancellations inside the period: prorate advance fees.
  for (let i = 0; i < phases.length; i++) {
    const cur = phases[i]!;
    if (cur.end <= period.start || cur.end >= period.end) continue;
    const t = cur.end;
    const next = phases[i + 1]?.start === t ? phases[i + 1] : undefined;
    const s = share(t, period.end, period, cur.plan.proration);
    if (cur.plan.baseFee?.timing === 'advance') {
      const exact = feeOf(cur.plan).mul(s).neg();
      add('proration', `credit:${i}`, { kind: 'proration', side: 'credit', phase: i }, {
        description: `Unused time on ${cur.plan.name} after ${describeInstant(t, customer.timeZone)}`,
        periodStart: iso(t),
        periodEnd: iso(period.end),
        quantity: s.neg().toFixed(),
        unitPrice: feeOf(cur.plan).toFixed(),
        breakdown: [{ ...fraction(s), unitPrice: feeOf(cur.plan).toFixed(), amount: exact.toFixed() }],
        exact: exact.toFixed(),
      });
    }
    if (next?.plan.baseFee?.timing === 'advance') {
      const s = share(t, period.end, period, next.plan.proration); // the new plan's own proration rule
      const exact = feeOf(next.plan).mul(s);
      add('proration', `charge:${i + 1}`, { kind: 'proration', side: 'charge', phase: i + 1 }, {
        description: `Remaining time on ${next.plan.name} from ${describeInstant(t, customer.timeZone)}`,
        periodStart: iso(t),
        periodEnd: iso(period.end),
        quantity: s.toFixed(),
        unitPrice: feeOf(next.plan).toFixed(),
        breakdown: [{ ...fraction(s), unitPrice: feeOf(next.plan).toFixed(), amount: exact.toFixed() }],
        exact: exact.toFixed(),
      });
    }
  }
  // The next period's advance fee.
  if (input.nextPeriod) {
    const np = input.nextPeriod;
    const p = phases.find((q) => q.start <= np.start && np.start < q.end);
    if (p?.plan.baseFee?.timing === 'advance') {
      const to = Math.min(np.end, p.end);
      const s = share(np.start, to, np, p.plan.proration);
      add('base_fee', 'advance-next', { kind: 'base_fee', timing: 'advance-next' }, {
        description: `${p.plan.name} base fee, in advance for the next period${s.eq(1) ? '' : ' (prorated)'}`,
        periodStart: iso(np.start),
        periodEnd: iso(to),
        quantity: s.toFixed(),
        unitPrice: feeOf(p.plan).toFixed(),
        breakdown: [{ ...fraction(s), unitPrice: feeOf(p.plan).toFixed(), amount: feeOf(p.plan).mul(s).toFixed() }],
        exact: feeOf(p.plan).mul(s).toFixed(),
      });
    }
  }

  // 2. Usage.
  const usageLines: { line: InvoiceLine; group: UsageGroup }[] = [];
  for (const g of usageGroups(sub, plans, period)) {
    const u = input.usage[g.id] ?? { quantity: '0' };
    const r = rate(g.price, u);
    const single = r.breakdown.length === 1 ? r.breakdown[0]!.unitPrice : undefined;
    const line = add('usage', g.id, { kind: 'usage', charge: g.id }, {
      description: g.description,
      meter: g.meter,
      periodStart: iso(g.ranges[0]!.start),
      periodEnd: iso(g.ranges.at(-1)!.end),
      quantity: u.quantity,
      ...(single ? { unitPrice: single } : {}),
      breakdown: r.breakdown,
      exact: r.amount,
    });
    usageLines.push({ line, group: g });
  }

  // 3. Line discounts, minimum commitment, invoice discounts.
  const discounts: Discount[] = sub.discounts ?? [];
  discounts.forEach((d, i) => {
    if (!d.charge) return;
    for (const { line: l, group } of usageLines.filter((x) => x.group.id === d.charge || x.group.id.startsWith(`${d.charge}#`))) {
      const base = D(l.amount);
      const off = d.type === 'percent' ? base.mul(d.value).div(100) : Decimal.min(D(d.value), base);
      if (off.lte(0)) continue;
      add('discount', `line:${i}:${group.id}`, { kind: 'discount', index: i, charge: group.id }, {
        description: d.description ?? `Discount on ${l.description} (${d.type === 'percent' ? `${d.value}%` : d.value})`,
        periodStart: l.periodStart,
        periodEnd: l.periodEnd,
        quantity: '1',
        breakdown: [{ description: d.type === 'percent' ? `${d.value}% of ${base.toFixed()}` : `${d.value} off`, units: '1', amount: off.neg().toFixed() }],
        exact: off.neg().toFixed(),
      });
    }
  });
  const activeMs = phases.reduce((acc, p) => acc + ((r) => (r ? r.end - r.start : 0))(overlap(period, p)), 0);
  const lastPhase = [...phases].reverse().find((p) => overlap(period, p));
  const minimum = sub.overrides?.minimumCommitment ?? lastPhase?.plan.minimumCommitment;
  if (minimum && activeMs > 0) {
    const s = share(0, activeMs);
    const prorated = D(minimum).mul(s);
    const usageTotal = usageLines.reduce((a, { line: l }) => a.plus(l.amount), D(0));
    if (usageTotal.lt(prorated)) {
      const exact = prorated.minus(usageTotal);
      add('minimum_true_up', 'minimum', { kind: 'minimum_true_up' }, {
        description: `Minimum commitment of ${minimum}${s.eq(1) ? '' : ' (prorated)'}: true-up`,
        periodStart: iso(period.start),
        periodEnd: iso(period.end),
        quantity: '1',
        breakdown: [
          { description: 'minimum commitment for the period', units: s.toFixed(), unitPrice: minimum, amount: prorated.toFixed() },
          { description: 'usage charged', units: '1', amount: usageTotal.neg().toFixed() },
        ],
        exact: exact.toFixed(),
      });
    }
  }
  discounts.forEach((d, i) => {
    if (d.charge) return;
    const subtotal = lines.reduce((a, l) => a.plus(l.amount), D(0));
    if (subtotal.lte(0)) return;
    const off = d.type === 'percent' ? subtotal.mul(d.value).div(100) : Decimal.min(D(d.value), subtotal);
    add('discount', `invoice:${i}`, { kind: 'discount', index: i }, {
      description: d.description ?? `Discount (${d.type === 'percent' ? `${d.value}%` : d.value})`,
      periodStart: iso(period.start),
      periodEnd: iso(period.end),
      quantity: '1',
      breakdown: [{ description: d.type === 'percent' ? `${d.value}% of ${subtotal.toFixed()}` : `${d.value} off`, units: '1', amount: off.neg().toFixed() }],
      exact: off.neg().toFixed(),
    });
  });

  // 4. Adjustments, corrections, prepaid credits.
  for (const a of input.adjustments ?? []) {
    add('adjustment', a.id, { kind: 'adjustment', adjustmentId: a.id }, {
      description: a.description,
      periodStart: iso(period.start),
      periodEnd: iso(period.end),
      quantity: '1',
      breakdown: [{ description: a.description, units: '1', amount: a.amount }],
      exact: a.amount,
    });
  }
  for (const c of input.corrections ?? []) {
    add('correction', `${c.chargeKey}:${c.period.start}`, { kind: 'correction', charge: c.chargeKey, periodStartMs: c.period.start }, {
      description: `Late usage for ${iso(c.period.start).slice(0, 10)} – ${iso(c.period.end).slice(0, 10)}: ${c.chargeKey} (${D(c.quantityDelta).gte(0) ? '+' : ''}${c.quantityDelta})`,
      meter: c.meter,
      periodStart: iso(c.period.start),
      periodEnd: iso(c.period.end),
      quantity: c.quantityDelta,
      breakdown: c.breakdown,
      exact: c.amountDelta,
    });
  }
  let total = lines.reduce((a, l) => a.plus(l.amount), D(0));
  const grants = [...(input.credits ?? [])]
    .filter((g) => (g.expiresAtMs === undefined || g.expiresAtMs > period.end) && g.createdAtMs <= input.cutoffMs)
    .sort((a, b) => (a.expiresAtMs ?? Infinity) - (b.expiresAtMs ?? Infinity) || a.createdAtMs - b.createdAtMs);
  for (const g of grants) {
    if (total.lte(0)) break;
    const left = D(g.amount).minus(g.drawn);
    if (left.lte(0)) continue;
    const draw = Decimal.min(left, total);
    const line = add('credit', g.id, { kind: 'credit', grantId: g.id }, {
      description: `Prepaid credit ${g.id}${g.expiresAtMs ? ` (expires ${iso(g.expiresAtMs).slice(0, 10)})` : ''}`,
      periodStart: iso(period.start),
      periodEnd: iso(period.end),
      quantity: '1',
      breakdown: [{ description: `drawn from a balance of ${left.toFixed()}`, units: '1', amount: draw.neg().toFixed() }],
      exact: draw.neg().toFixed(),
    });
    total = total.plus(line.amount);
  }

  const sum = lines.reduce((a, l) => a.plus(l.amount), D(0));
  const totalStr = roundMoney(sum.toFixed(), currency, mode);
  return {
    id: input.invoiceId,
    customer: customer.key,
    currency,
    periodStart: iso(period.start),
    periodEnd: iso(period.end),
    status: 'draft',
    cutoff: iso(input.cutoffMs),
    lines,
    total: totalStr,
    totalMinor: toMinor(totalStr, currency),
  };
}

/** The usage part of an invoice (usage, line discounts, minimum true-up), per charge: what corrections compare. */
export function usageAmounts(inv: Invoice): Map<string, Decimal> {
  const out = new Map<string, Decimal>();
  for (const l of inv.lines) {
    const src = lineSource(l);
    const key = src.kind === 'usage' ? src.charge : src.kind === 'minimum_true_up' ? '(minimum)' : src.kind === 'discount' && 'charge' in src ? src.charge : undefined;
    if (key !== undefined) out.set(key, (out.get(key) ?? D(0)).plus(l.amount));
  }
  return out;
}
