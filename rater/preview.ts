import { AppError } from '../common/errors.ts';
import { Decimal } from '../common/decimal.ts';
import type { BillingCatalog } from './billing-catalog.ts';
import { changePlan, type Subscription } from './catalog.ts';
import type { InvoicePreviewItem, InvoicePreviews, Plan, PreviewDraft } from './contracts.ts';
import { InvoiceComputer, type BillingOptions, type BillingReads, type BillingUsage } from './invoice-compute.ts';
import { appendVersion, phaseVersion, planVersion, versionAt } from './plan-versions.ts';

export interface InvoicePreviewDeps {
  catalog: BillingCatalog;
  usage: BillingUsage;
  reads: BillingReads;
  options: Pick<BillingOptions, 'rounding'>;
}

const ms = (s: string) => Date.parse(s);
const iso = (t: number) => new Date(t).toISOString();
const invalid = (msg: string) => new AppError('REQUEST_INVALID', msg);

/** The catalog changes a draft makes: plans and subscriptions as they would be stored. */
interface DraftChanges {
  plans: Plan[];
  subscriptions: Subscription[];
}

/**
 * The invoice of the current period (usage up to now) before and after a draft change, computed
 * by the same InvoiceComputer as closes and projections, over the catalog with the draft laid on
 * top (BillingCatalog.withDraft). Nothing is stored: the draft lives for this call only. The
 * draft is checked by the same rules as saving it (appendVersion, changePlan), so a preview
 * that succeeds is a change that can be saved.
 */
export class InvoicePreview {
  constructor(private readonly deps: InvoicePreviewDeps) {}

  async preview(draft: PreviewDraft, nowMs: number): Promise<InvoicePreviews> {
    const { catalog } = this.deps;
    const changes = this.changes(draft, nowMs);
    const after = new InvoiceComputer({ usage: this.deps.usage, catalog: catalog.withDraft(changes), options: this.deps.options });
    const before = new InvoiceComputer({ usage: this.deps.usage, catalog, options: this.deps.options });
    const items: InvoicePreviewItem[] = [];
    for (const next of changes.subscriptions) {
      const cur = catalog.subscriptions().find((s) => s.id === next.id)!;
      const period = catalog.periodOf(cur, Math.max(nowMs, ms(cur.phases[0]!.start)));
      const b = (await before.compute(cur, period, nowMs, this.deps.reads)).invoice;
      const a = (await after.compute(next, period, nowMs, this.deps.reads)).invoice;
      items.push({ subscription: cur.id, customer: cur.customer, periodStart: iso(period.start), periodEnd: iso(period.end), before: b, after: a, difference: new Decimal(a.total).minus(b.total).toFixed() });
    }
    return { asOf: iso(nowMs), items };
  }

  private subscription(id: string): Subscription {
    const s = this.deps.catalog.subscriptions().find((x) => x.id === id);
    if (!s) throw new AppError('NOT_FOUND', `no subscription "${id}"`);
    return s;
  }

  private plan(key: string): Plan {
    const p = this.deps.catalog.plansMap()[key];
    if (!p) throw invalid(`plan: no plan "${key}"`);
    return p;
  }

  private changed(r: Subscription | { error: string }): Subscription {
    if ('error' in r) throw invalid(r.error);
    return r;
  }

  /** The plans and subscriptions `draft` would store. */
  private changes(draft: PreviewDraft, nowMs: number): DraftChanges {
    switch (draft.kind) {
      case 'plan-version':
        return this.planVersionChanges(draft, nowMs);
      case 'migrate': {
        const s = this.subscription(draft.subscription);
        const key = s.phases.at(-1)!.plan;
        if (!planVersion(this.plan(key), draft.version)) throw invalid(`version: plan "${key}" has no version ${draft.version}`);
        return { plans: [], subscriptions: [this.changed(changePlan(s, { plan: key, version: draft.version }, ms(draft.effectiveAt)))] };
      }
      case 'change-plan': {
        const s = this.subscription(draft.subscription);
        const at = ms(draft.effectiveAt);
        return { plans: [], subscriptions: [this.changed(changePlan(s, { plan: draft.plan, version: versionAt(this.plan(draft.plan), at).version }, at))] };
      }
      case 'cancel':
        return { plans: [], subscriptions: [this.changed(changePlan(this.subscription(draft.subscription), undefined, ms(draft.effectiveAt)))] };
      case 'terms': {
        const { overrides: _o, discounts: _d, ...rest } = this.subscription(draft.subscription);
        return { plans: [], subscriptions: [{ ...rest, ...(draft.overrides ? { overrides: draft.overrides } : {}), ...(draft.discounts ? { discounts: draft.discounts } : {}) }] };
      }
    }
  }

  /** The plan with the draft version appended, and its active subscriptions (or the one named) migrated to it. */
  private planVersionChanges(draft: Extract<PreviewDraft, { kind: 'plan-version' }>, nowMs: number): DraftChanges {
    const stored = this.plan(draft.plan.key);
    const next = appendVersion(stored, draft.plan, ms(draft.effectiveFrom), iso(nowMs));
    if ('field' in next) throw invalid(`invalid body: ${next.field === 'effectiveFrom' ? 'body.effectiveFrom' : `body.plan.${next.field}`}: ${next.reason}`);
    const version = next.version!;
    const { catalog } = this.deps;
    const subs = draft.subscription
      ? [this.subscription(draft.subscription)]
      : catalog.subscriptions().filter((s) => {
          const last = s.phases.at(-1)!;
          return last.plan === stored.key && (!last.end || ms(last.end) > nowMs);
        });
    const migrated = subs.map((s) => {
      const last = s.phases.at(-1)!;
      if (last.plan !== stored.key) throw invalid(`subscription: "${s.id}" is not on plan "${stored.key}"`);
      if (phaseVersion(last) === version) return s;
      const period = catalog.periodOf(s, Math.max(nowMs, ms(s.phases[0]!.start)));
      const at = draft.effectiveAt ? ms(draft.effectiveAt) : Math.max(period.start, ms(last.start));
      return this.changed(changePlan(s, { plan: stored.key, version }, at));
    });
    return { plans: [next], subscriptions: migrated };
  }
}
