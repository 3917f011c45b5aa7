/**
 * `meterline invoice --dry-run --scenario <file>`: the invoice-level counterpart of `meterline
 * rate`. A scenario file describes a customer, plans, the subscription's plan changes, the usage
 * per meter and one-time items; the rater's own invoice builder (`buildInvoice`, pure) prices it.
 * Nothing is read from or written to a catalog, NATS, ClickHouse or a server, so a price, a
 * proration or a credit can be checked before it is configured for real.
 *
 * Order of work: validate the whole scenario (every problem named by its field), cut the billing
 * period in the customer's zone as billing does (periods.ts), measure each usage group (a charge
 * and its price over the ranges it was in force) from the scenario's usage, then build.
 *
 * The rater is imported when the command runs (as cli/main.ts loads every command's work), so
 * registering the command and its `--help` stay light.
 */
import fs from 'node:fs';
import type { Command } from 'commander';
import { z } from 'zod';
import { Decimal } from '../common/decimal.ts';
import type * as RaterModule from '../rater/index.ts';
import type { CreditGrant, Customer, Invoice, OneTimeAdjustment, Period, Plan, Subscription, UsageGroup } from '../rater/index.ts';
import type { RateInput } from '../rater/pricing/index.ts';

type Rater = typeof RaterModule;
const loadRater = (): Promise<Rater> => import('../rater/index.ts');

const instant = z
  .string({ required_error: 'is required', invalid_type_error: 'must be an RFC 3339 date-time string' })
  .refine((s) => /^\d{4}-\d{2}-\d{2}T/.test(s) && !Number.isNaN(Date.parse(s)), 'must be an RFC 3339 date-time such as 2026-01-15T00:00:00Z');

/** A decimal string (an integer JSON number is taken as its string; a fractional one is refused, as in a price). */
function decimal(signed = false) {
  return z.unknown().transform((v, ctx): string => {
    const fail = (message: string) => {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message });
      return z.NEVER;
    };
    if (typeof v === 'number' && !Number.isSafeInteger(v)) return fail(`write ${v} as a decimal string, e.g. "${v}": a fractional JSON number may already have lost precision`);
    const s = typeof v === 'number' ? String(v) : v;
    if (typeof s !== 'string') return fail(v === undefined ? 'is required' : `must be a decimal string such as "12.5", got ${v === null ? 'null' : typeof v}`);
    if (!(signed ? /^-?\d+(\.\d+)?$/ : /^\d+(\.\d+)?$/).test(s)) return fail(`"${s}" is not a ${signed ? '' : 'non-negative '}decimal (expected e.g. "12.5")`);
    return s;
  });
}

const EventSchema = z
  .object({ time: instant, value: decimal().optional(), dimensions: z.record(z.string()).optional() })
  .strict();

const MeterUsageSchema = z
  .object({
    total: decimal().optional(),
    values: z.array(decimal()).optional(),
    byDimension: z.record(decimal()).optional(),
    events: z.array(EventSchema).optional(),
  })
  .strict()
  .refine((u) => [u.total, u.values, u.byDimension, u.events].filter((x) => x !== undefined).length === 1, {
    message: 'give exactly one of total, values, byDimension or events',
  });
type MeterUsage = z.infer<typeof MeterUsageSchema>;

const PhaseSchema = z.object({ plan: z.string().min(1, 'must name a plan of plans[]'), start: instant }).strict();

/** The scenario's schema, from the rater's own customer, plan, override and discount schemas. */
const scenarioSchema = ({ CustomerInputSchema, DiscountSchema, OverridesSchema, PlanInputSchema }: Rater) => z
  .object({
    description: z.string().optional(),
    customer: CustomerInputSchema,
    plans: z.array(PlanInputSchema).min(1, 'needs at least one plan'),
    subscription: z
      .object({
        /** First period boundary; default: the first phase's start. */
        anchor: instant.optional(),
        /** The plans in force, in order: each phase ends where the next begins. */
        phases: z.array(PhaseSchema).min(1, 'needs at least one phase'),
        /** Cancellation: the last phase ends here. */
        end: instant.optional(),
        overrides: OverridesSchema.optional(),
        discounts: z.array(DiscountSchema).optional(),
      })
      .strict(),
    /** An instant inside the period to invoice; default: the subscription's first period. */
    period: instant.optional(),
    usage: z.record(MeterUsageSchema).optional(),
    adjustments: z.array(z.object({ id: z.string().min(1).optional(), description: z.string().min(1), amount: decimal(true) }).strict()).optional(),
    credits: z.array(z.object({ id: z.string().min(1), amount: decimal(), grantedAt: instant.optional(), expiresAt: instant.optional() }).strict()).optional(),
    rounding: z.enum(['half_up', 'half_even', 'down', 'up']).optional(),
  })
  .strict()
  .superRefine((s, ctx) => {
    const keys = new Set(s.plans.map((p) => p.key));
    s.subscription.phases.forEach((p, i) => {
      if (!keys.has(p.plan)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['subscription', 'phases', i, 'plan'], message: `no plan "${p.plan}" in plans (have: ${[...keys].join(', ')})` });
      const prev = s.subscription.phases[i - 1];
      if (prev && Date.parse(p.start) <= Date.parse(prev.start)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['subscription', 'phases', i, 'start'], message: `must be after the previous phase's start (${prev.start}): phases are in order` });
    });
    const last = s.subscription.phases.at(-1);
    if (last && s.subscription.end && Date.parse(s.subscription.end) <= Date.parse(last.start)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['subscription', 'end'], message: `must be after the last phase's start (${last.start})` });
    s.plans.forEach((p, i) => {
      if (p.currency !== s.customer.currency) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['plans', i, 'currency'], message: `must be the customer's currency (${s.customer.currency}): an invoice has one currency` });
    });
  });
export type Scenario = z.infer<ReturnType<typeof scenarioSchema>>;

/** A scenario the CLI cannot price: `issues` name each field (`usage.api-calls.total: ...`). */
export class ScenarioError extends Error {
  constructor(
    summary: string,
    readonly issues: { path: string; message: string }[] = [],
  ) {
    super(issues.length === 0 ? summary : `${summary}:\n${issues.map((i) => `  - ${i.path}: ${i.message}`).join('\n')}`);
    this.name = 'ScenarioError';
  }
}

function formatPath(path: (string | number)[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? p : `.${p}`;
  return out === '' ? '(scenario)' : out;
}

/** Messages a scenario author can act on, for zod's built-in issues (as the price schema words them). */
const errorMap: z.ZodErrorMap = (issue, ctx) => {
  if (issue.code === z.ZodIssueCode.invalid_type) {
    if (issue.received === 'undefined') return { message: 'is required' };
    return { message: `must be ${issue.expected === 'object' ? 'a JSON object' : issue.expected === 'array' ? 'an array' : `a ${issue.expected}`}, got ${issue.received}` };
  }
  if (issue.code === z.ZodIssueCode.invalid_enum_value) return { message: `must be one of ${issue.options.map((o) => JSON.stringify(o)).join(', ')} (got ${JSON.stringify(issue.received)})` };
  return { message: ctx.defaultError };
};

/** The scenario a JSON value describes, or throws ScenarioError listing every field error. */
export async function parseScenario(json: unknown): Promise<Scenario> {
  const r = scenarioSchema(await loadRater()).safeParse(json, { errorMap });
  if (r.success) return r.data;
  const issues = r.error.issues.flatMap((i) =>
    i.code === z.ZodIssueCode.unrecognized_keys ? i.keys.map((k) => ({ path: formatPath([...i.path, k]), message: 'is not a field here' })) : [{ path: formatPath(i.path), message: i.message }],
  );
  throw new ScenarioError(`invalid scenario (${issues.length} problem${issues.length === 1 ? '' : 's'})`, issues);
}

const sum = (xs: string[]) => xs.reduce((a, x) => a.plus(x), new Decimal(0)).toFixed();
const inRanges = (ms: number, ranges: Period[]) => ranges.some((r) => ms >= r.start && ms < r.end);

/**
 * The usage of one group from the scenario's usage of its meter. Events count only inside the
 * group's ranges (a plan change splits them between prices); a total, values or byDimension have
 * no times, so they are refused for a meter that two prices share in the period.
 */
function measure(group: UsageGroup, u: MeterUsage | undefined, shared: boolean): RateInput {
  const path = `usage.${group.meter}`;
  if (!u) return { quantity: '0', values: [], byDimension: {} };
  if (!u.events && shared) {
    throw new ScenarioError('invalid scenario', [{ path, message: `meter "${group.meter}" is priced by more than one price in this period (a plan change): give its usage as events with times, so each price rates its own part` }]);
  }
  if (u.total !== undefined) return { quantity: u.total };
  if (u.values) return { quantity: sum(u.values), values: u.values };
  if (u.byDimension) return { quantity: sum(Object.values(u.byDimension)), byDimension: Object.fromEntries(Object.entries(u.byDimension).map(([k, q]) => [k, { quantity: q }])) };
  const events = (u.events ?? []).map((e, i) => ({ ...e, i, ms: Date.parse(e.time), value: e.value ?? '1' })).filter((e) => inRanges(e.ms, group.ranges));
  events.sort((a, b) => a.ms - b.ms || a.i - b.i);
  const values = events.map((e) => e.value);
  if (group.price.model !== 'dimensional') return { quantity: sum(values), values };
  const dim = group.price.dimension;
  const byDimension: NonNullable<RateInput['byDimension']> = {};
  for (const e of events) {
    const key = e.dimensions?.[dim];
    if (key === undefined) throw new ScenarioError('invalid scenario', [{ path: `${path}.events[${e.i}].dimensions.${dim}`, message: `is required: charge "${group.chargeKey}" is priced per ${dim}` }]);
    const d = (byDimension[key] ??= { quantity: '0', values: [] });
    d.quantity = new Decimal(d.quantity).plus(e.value).toFixed();
    d.values?.push(e.value);
  }
  return { quantity: sum(values), byDimension };
}

export interface DryRun {
  invoice: Invoice;
  period: Period;
  timeZone: string;
  /** What was left out and why (usage of meters no charge uses, events outside the period). */
  notes: string[];
}

/** Prices a scenario with the rater's invoice builder. Pure but for loading the rater: the scenario in, the invoice out. */
export async function dryRunInvoice(s: Scenario): Promise<DryRun> {
  const { buildInvoice, periodAt, usageGroups } = await loadRater();
  const createdAt = '1970-01-01T00:00:00.000Z';
  const customer: Customer = { ...s.customer, createdAt };
  const plans: Record<string, Plan> = Object.fromEntries(s.plans.map((p) => [p.key, { ...p, createdAt }]));
  const phases = s.subscription.phases.map((p, i, all) => {
    const end = all[i + 1]?.start ?? s.subscription.end;
    return { plan: p.plan, start: p.start, ...(end ? { end } : {}) };
  });
  const first = phases[0]!;
  const anchor = s.subscription.anchor ?? first.start;
  const subscription: Subscription = {
    id: 'dry-run',
    customer: customer.key,
    anchor,
    phases,
    ...(s.subscription.overrides ? { overrides: s.subscription.overrides } : {}),
    ...(s.subscription.discounts ? { discounts: s.subscription.discounts } : {}),
    createdAt,
  };
  const interval = plans[first.plan]!.interval;
  const tz = customer.timeZone;
  const periodOf = (ms: number) => periodAt(Date.parse(anchor), interval, ms, tz);
  const period = periodOf(Date.parse(s.period ?? first.start));
  const endMs = s.subscription.end ? Date.parse(s.subscription.end) : Number.MAX_SAFE_INTEGER;

  const groups = usageGroups(subscription, plans, period);
  const perMeter = new Map<string, number>();
  for (const g of groups) perMeter.set(g.meter, (perMeter.get(g.meter) ?? 0) + 1);
  const usage: Record<string, RateInput> = {};
  for (const g of groups) usage[g.id] = measure(g, s.usage?.[g.meter], (perMeter.get(g.meter) ?? 0) > 1);

  const adjustments: OneTimeAdjustment[] = (s.adjustments ?? []).map((a, i) => ({ id: a.id ?? `adjustment-${i + 1}`, description: a.description, amount: a.amount }));
  const credits: CreditGrant[] = (s.credits ?? []).map((c) => ({
    id: c.id,
    amount: c.amount,
    drawn: '0',
    createdAtMs: c.grantedAt ? Date.parse(c.grantedAt) : period.start,
    ...(c.expiresAt ? { expiresAtMs: Date.parse(c.expiresAt) } : {}),
  }));
  const invoice = buildInvoice({
    invoiceId: 'dry-run',
    customer,
    subscription,
    plans,
    period,
    firstPeriod: periodOf(Date.parse(first.start)).start === period.start,
    ...(endMs > period.end ? { nextPeriod: periodOf(period.end) } : {}),
    usage,
    cutoffMs: period.end,
    ...(s.rounding ? { rounding: s.rounding } : {}),
    adjustments,
    credits,
  });
  return { invoice, period, timeZone: tz, notes: usageNotes(s, groups) };
}

function usageNotes(s: Scenario, groups: UsageGroup[]): string[] {
  const notes: string[] = [];
  for (const [meter, u] of Object.entries(s.usage ?? {})) {
    const mine = groups.filter((g) => g.meter === meter);
    if (mine.length === 0) {
      notes.push(`usage.${meter}: no charge in force in this period uses meter "${meter}"; its usage is not on the invoice`);
      continue;
    }
    const outside = (u.events ?? []).filter((e) => !mine.some((g) => inRanges(Date.parse(e.time), g.ranges))).length;
    if (outside > 0) notes.push(`usage.${meter}: ${outside} event(s) fall outside this period (or the time its charges were in force) and are not on this invoice`);
  }
  return notes;
}

const local = (localParts: Rater['localParts'], ms: number, tz: string) => {
  const p = localParts(ms, tz);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${p.y}-${two(p.m + 1)}-${two(p.d)} ${two(p.hh)}:${two(p.mm)}`;
};

/** The invoice as text: every line with its breakdown, then the total. */
export async function renderDryRun(r: DryRun): Promise<string> {
  const { invoice, period, timeZone } = r;
  const { localParts } = await loadRater();
  const width = 64;
  const row = (left: string, right: string) => `${left.padEnd(width - right.length - 1)} ${right}`;
  const out = [
    `Invoice dry run for ${invoice.customer}, ${invoice.currency}`,
    `Period ${local(localParts, period.start, timeZone)} – ${local(localParts, period.end, timeZone)} ${timeZone} (${invoice.periodStart} – ${invoice.periodEnd})`,
    '',
  ];
  for (const line of invoice.lines) {
    out.push(row(`${line.description}`, line.amount));
    if (line.periodStart !== invoice.periodStart || line.periodEnd !== invoice.periodEnd) out.push(`    for ${local(localParts, Date.parse(line.periodStart), timeZone)} – ${local(localParts, Date.parse(line.periodEnd), timeZone)}`);
    for (const b of line.breakdown) {
      // Rows that do not spell out their arithmetic (a prorated share, a tier of a volume price) get it appended.
      const how = b.unitPrice !== undefined && !b.description.includes('×') ? ` (${b.units} × ${b.unitPrice}${b.flatFee !== undefined ? ` + ${b.flatFee}` : ''})` : '';
      out.push(`    · ${b.description}${how}: ${b.amount}`);
    }
  }
  out.push('', `${row('Total', invoice.total)} ${invoice.currency}`);
  for (const n of r.notes) out.push(`note: ${n}`);
  return out.join('\n') + '\n';
}

/** Reads, validates and prices a scenario file; the text (or JSON) the command prints. */
export async function runInvoiceDryRun(file: string, opts: { json?: boolean } = {}): Promise<string> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  let scenario: Scenario;
  try {
    scenario = await parseScenario(json);
  } catch (err) {
    throw new Error(`${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const r = await dryRunInvoice(scenario);
  if (opts.json) return JSON.stringify({ period: { start: r.invoice.periodStart, end: r.invoice.periodEnd, timeZone: r.timeZone }, invoice: r.invoice, notes: r.notes }, null, 2) + '\n';
  return await renderDryRun(r);
}

export const SCENARIO_HELP = `
Scenario file (JSON; amounts are decimal strings, times RFC 3339):
  {
    "description": "free text",
    "customer": { "key": "acme", "name": "Acme", "currency": "EUR", "timeZone": "Europe/Paris" },
    "plans": [ <plan>, ... ]        as POST /api/v1/plans takes them: key, name, currency, interval,
                                    baseFee { amount, timing: advance|arrears }, charges [{ key, meter,
                                    price }], minimumCommitment, proration: second|day
    "subscription": {
      "phases": [ { "plan": "small", "start": "2026-01-01T00:00:00+01:00" },
                  { "plan": "large", "start": "2026-01-15T00:00:00+01:00" } ],
                                    each phase ends where the next starts (a plan change)
      "end": "...",                 optional: cancellation
      "anchor": "...",              optional: first period boundary (default: the first start)
      "overrides": { ... }, "discounts": [ { "type": "percent"|"amount", "value": "10", "charge"? } ]
    },
    "period": "2026-01-20T00:00:00Z",   optional: an instant in the period to invoice (default: the first)
    "usage": { "<meter>": one of
        { "total": "1500" }                       the period's quantity
        { "values": ["12.5", "40"] }              per-event amounts (percentage prices)
        { "byDimension": { "gpt-4o": "2000" } }   quantity per dimension value (dimensional prices)
        { "events": [ { "time": "...", "value"?: "12.5", "dimensions"?: { "model": "gpt-4o" } } ] }
                                                  value defaults to 1 (a count); events are placed by
                                                  time, so a plan change splits them between prices },
    "adjustments": [ { "description": "Goodwill", "amount": "-10" } ],   negative credits the customer
    "credits": [ { "id": "welcome", "amount": "50", "expiresAt"?: "...", "grantedAt"?: "..." } ],
    "rounding": "half_up" | "half_even" | "down" | "up"
  }
Examples: docs/scenarios/*.json (docs/scenarios/README.md). Prices: rater/pricing/README.md.
`;

/** Registers `meterline invoice` on the CLI (cli/main.ts). */
export function registerInvoiceCommand(program: Command): void {
  program
    .command('invoice')
    .description('Price one invoice offline from a scenario file with the rater\'s invoice builder (plans, plan changes, usage, discounts, credits): every line with its breakdown, and the total. Touches no catalog and no server.')
    .option('--dry-run', 'compute the invoice and print it; nothing is stored (required: real invoices are made by `meterline close`)')
    .requiredOption('--scenario <file>', 'scenario JSON file (format below)')
    .option('--json', 'print the invoice as JSON instead of text')
    .addHelpText('after', SCENARIO_HELP)
    .action(async (opts: { dryRun?: boolean; scenario: string; json?: boolean }) => {
      if (!opts.dryRun) throw new Error('invoice: give --dry-run; this command only previews (real invoices are made by `meterline close`)');
      process.stdout.write(await runInvoiceDryRun(opts.scenario, { json: opts.json ?? false }));
    });
}
