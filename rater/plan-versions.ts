import type { Phase, Plan, PlanInput, PlanVersion, PlanView, Subscription } from './contracts.ts';

/**
 * Plan versions, pure. A plan is one catalog record holding every version; a subscription's
 * phase pins the version it is billed with, so publishing a version changes no existing
 * subscription's invoices until it is migrated (a new phase on the new version).
 */

const ms = (s: string) => Date.parse(s);

/** The definition part of a plan or version: every field but the version bookkeeping (new plan fields come along). */
function definition(p: PlanInput | Plan | PlanVersion): PlanInput {
  const { createdAt: _c, version: _v, effectiveFrom: _e, versions: _vs, ...def } = p as Plan & Partial<PlanVersion>;
  return def;
}

/** Every version of `plan`, oldest first; a plan stored before versions is its own version 1. */
export function versionsOf(plan: Plan): PlanVersion[] {
  if (plan.versions?.length) return plan.versions;
  return [{ ...definition(plan), version: 1, effectiveFrom: plan.effectiveFrom ?? plan.createdAt, createdAt: plan.createdAt }];
}

/** Version `n` of `plan`, if it exists. */
export function planVersion(plan: Plan, n: number): PlanVersion | undefined {
  return versionsOf(plan).find((v) => v.version === n);
}

/**
 * The version a phase starting at `atMs` gets: the latest whose effectiveFrom is at or before
 * it; before the second version's date, version 1 (whatever version 1's own date).
 */
export function versionAt(plan: Plan, atMs: number): PlanVersion {
  const all = versionsOf(plan);
  return [...all].reverse().find((v) => ms(v.effectiveFrom) <= atMs) ?? all[0]!;
}

/** The version `phase` is billed with (absent: 1). */
export function phaseVersion(phase: Phase): number {
  return phase.version ?? 1;
}

export interface VersionRefusal {
  /** The body field at fault, for the error (`body.currency`). */
  field: string;
  reason: string;
}

/**
 * `plan` with `input` appended as its next version, effective from `effectiveFromMs`; or why not.
 * Currency and interval are the plan's for good: a subscription's periods are cut from the
 * interval (a version with another would change the length of periods already running), and
 * a customer is billed in one currency (a version in another would bill its existing customers
 * in a currency they do not pay in). A plan in another currency or interval is a new plan.
 */
export function appendVersion(plan: Plan, input: PlanInput, effectiveFromMs: number, nowIso: string): Plan | VersionRefusal {
  const all = versionsOf(plan);
  const latest = all.at(-1)!;
  if (input.currency !== latest.currency) {
    return { field: 'currency', reason: `a plan's versions share its currency (${latest.currency}): its customers are billed in it; create a new plan priced in ${input.currency} and change the subscriptions to it` };
  }
  if (input.interval !== latest.interval) {
    return { field: 'interval', reason: `a plan's versions share its billing interval (${latest.interval}): running subscriptions' periods are cut from it; create a new plan billed per ${input.interval} and change the subscriptions to it` };
  }
  if (all.length > 1 && effectiveFromMs <= ms(latest.effectiveFrom)) {
    return { field: 'effectiveFrom', reason: `must be after the latest version's (${latest.version}) effectiveFrom ${latest.effectiveFrom}` };
  }
  const next: PlanVersion = { ...definition(input), key: plan.key, version: latest.version + 1, effectiveFrom: new Date(effectiveFromMs).toISOString(), createdAt: nowIso };
  return { ...definition(next), createdAt: plan.createdAt, version: next.version, effectiveFrom: next.effectiveFrom, versions: [...all, next] };
}

/** `plan` as the API shows it at `nowMs`: the version in force, flattened, and every version's summary. */
export function planView(plan: Plan, nowMs: number): PlanView {
  const all = versionsOf(plan);
  const current = versionAt(plan, nowMs);
  return {
    ...definition(current),
    createdAt: plan.createdAt,
    version: current.version,
    effectiveFrom: current.effectiveFrom,
    latestVersion: all.at(-1)!.version,
    versions: all.map((v) => ({ version: v.version, effectiveFrom: v.effectiveFrom, createdAt: v.createdAt, name: v.name })),
  };
}

/** Key of a phase's plan version in a billing snapshot's `plans` (see `billingSnapshot`). */
export const versionKey = (plan: string, version: number) => `${plan}@v${version}`;

/**
 * The subscription and plans as the invoice builder reads them: each phase refers to its pinned
 * version (`pro@v2`), and `plans` holds exactly those versions. The builder looks plans up by
 * the phase's `plan`, so two phases on two versions of one plan are billed each with its own.
 * Throws (a bug or a deleted plan) when a phase's plan or version is missing: `missing` names it.
 */
export function billingSnapshot(sub: Subscription, plans: Record<string, Plan>, missing: (what: string) => Error): { subscription: Subscription; plans: Record<string, Plan> } {
  const out: Record<string, Plan> = {};
  const phases = sub.phases.map((p) => {
    const plan = plans[p.plan];
    if (!plan) throw missing(`subscription ${sub.id} uses plan "${p.plan}", which does not exist`);
    const n = phaseVersion(p);
    const v = planVersion(plan, n);
    if (!v) throw missing(`subscription ${sub.id} uses version ${n} of plan "${p.plan}", which does not exist`);
    const k = versionKey(p.plan, n);
    out[k] = { ...definition(v), createdAt: v.createdAt, version: v.version, effectiveFrom: v.effectiveFrom };
    return { ...p, plan: k, version: n };
  });
  return { subscription: { ...sub, phases }, plans: out };
}

/** The charges of any version of `plan` that bill `meter`, as "plan vN charge". */
export function chargesOfMeter(plan: Plan, meter: string): string[] {
  return versionsOf(plan).flatMap((v) => v.charges.filter((c) => c.meter === meter).map((c) => `${plan.key} v${v.version} ${c.key}`));
}
