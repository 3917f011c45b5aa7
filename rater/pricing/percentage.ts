/**
 * Percentage (Lago's `percentage` charge model): a rate on transaction amounts plus a fixed fee
 * per transaction, with free units and per-transaction bounds. Source: Lago's guide
 * https://getlago.com/docs/guide/plans/charges/charge-models/percentage and lago-api
 * app/services/charges/charge_models/percentage_service.rb (with the running totals from
 * app/services/billable_metrics/aggregations/sum_service.rb).
 *
 * Order of application, event by event in event order:
 *
 *   1. Free units (`freeEvents`, `freeAmount`). The free window is open from the first event while
 *      fewer than `freeEvents` events were free and some of `freeAmount` is left (a limit that is
 *      not set, or 0, does not limit). In the window, an event whose amount is below the free
 *      amount left is entirely free: no rate, no fixed fee, no minimum. An event that reaches the
 *      free amount left closes the window: the part of it up to that amount is free, the rest is
 *      charged from step 2 on (fixed fee included). Once closed, every event is charged in full.
 *      So only `freeEvents`: the first N events are free; only `freeAmount`: events are free while
 *      their running total stays below it; both: whichever runs out first ends the free units
 *      (Lago's worked example: 3 events or $500 free, events $200, $100, $100, $50 → the 4th event
 *      pays $0.10 + 1.2% × $50 = $0.70 although the running total, $450, is below $500).
 *   2. Rate: `rate` / 100 × the event's charged amount.
 *   3. Fixed fee: + `fixedFeePerEvent`.
 *   4. Per-transaction bounds: the event's fee (2 + 3) is raised to `perEventMin` or capped at
 *      `perEventMax`.
 *   5. The amount is the sum of the events' fees. The breakdown shows the rate on the summed
 *      charged amount, the fixed fees, and the minimum/maximum adjustments as separate rows.
 *
 * Where Lago is inconsistent, one rule holds here:
 *   - Lago's per-transaction code path (used only when a min/max is set) keeps events free while
 *     *either* limit is left, while its aggregate path and its documented example end the free
 *     units when either runs out. We follow the documentation everywhere, so adding a bound never
 *     changes which events are free.
 *   - Lago's aggregate path skips the fixed fee when the summed amount is 0; we charge it on every
 *     charged event, as its per-transaction path does.
 *   - Negative event amounts (refunds) are refused: a refund is a credit line, not a negative fee.
 *
 * Without per-event `values`, a price that has no per-event terms (fixed fee, free events, bounds)
 * applies the rate to `quantity` (the summed amount) less `freeAmount`.
 */
import { D, fmt, sum, ZERO, type Dec, type ModelResult } from './decimal.ts';
import { PricingError } from './errors.ts';
import type { BreakdownRow, PercentagePrice } from './types.ts';

export function ratePercentage(price: PercentagePrice, input: { quantity: Dec; values?: Dec[] }): ModelResult & { billedQuantity: Dec } {
  const factor = new D(price.rate).div(100);
  const freeEvents = price.freeEvents ?? 0;
  const freeAmount = new D(price.freeAmount ?? 0);
  const fixedFee = new D(price.fixedFeePerEvent ?? 0);
  const min = price.perEventMin === undefined ? undefined : new D(price.perEventMin);
  const max = price.perEventMax === undefined ? undefined : new D(price.perEventMax);
  const hasFreeUnits = freeEvents > 0 || freeAmount.gt(0);

  if (!input.values) {
    const perEventTerms = [
      price.fixedFeePerEvent !== undefined && 'fixedFeePerEvent',
      freeEvents > 0 && 'freeEvents',
      min && 'perEventMin',
      max && 'perEventMax',
    ].filter((t): t is string => typeof t === 'string');
    if (perEventTerms.length > 0) {
      throw new PricingError('RATE_INPUT_INVALID', 'percentage price needs the per-event amounts', [
        { path: 'values', message: `required because the price has ${perEventTerms.join(', ')}` },
      ]);
    }
    const freeUsed = D.min(input.quantity, freeAmount);
    const base = input.quantity.minus(freeUsed);
    const amount = base.times(factor);
    const rows: BreakdownRow[] = [];
    if (hasFreeUnits) rows.push({ description: `Free amount: ${fmt(freeUsed)} of ${price.freeAmount ?? '0'}, free of the rate`, units: fmt(freeUsed), amount: '0' });
    rows.push({ description: `${price.rate}% of ${fmt(base)}`, units: fmt(base), unitPrice: fmt(factor), amount: fmt(amount) });
    return { amount, rows, billedQuantity: base };
  }

  let windowOpen = hasFreeUnits;
  let freeEventsLeft = freeEvents > 0 ? freeEvents : Infinity;
  let freeAmountLeft: Dec | null = freeAmount.gt(0) ? freeAmount : null; // null: not limited by amount
  let freeEventCount = 0;
  let freeAmountUsed = ZERO;
  const charged: Dec[] = []; // charged amount of each charged event
  const fees: Dec[] = [];
  let minCount = 0;
  let maxCount = 0;
  const minAdjustments: Dec[] = [];
  const maxAdjustments: Dec[] = [];

  for (const value of input.values) {
    let chargeable = value;
    if (windowOpen) {
      if (freeAmountLeft === null || value.lt(freeAmountLeft)) {
        // 1. entirely free
        freeEventCount += 1;
        freeAmountUsed = freeAmountUsed.plus(value);
        if (freeAmountLeft !== null) freeAmountLeft = freeAmountLeft.minus(value);
        freeEventsLeft -= 1;
        if (freeEventsLeft === 0) windowOpen = false;
        continue;
      }
      // 1. reaches the free amount left: that part is free, the rest is charged; the window closes.
      freeAmountUsed = freeAmountUsed.plus(freeAmountLeft);
      chargeable = value.minus(freeAmountLeft);
      windowOpen = false;
    }
    // 2. rate, 3. fixed fee
    let fee = chargeable.times(factor).plus(fixedFee);
    // 4. per-transaction bounds
    if (min && fee.lt(min)) {
      minCount += 1;
      minAdjustments.push(min.minus(fee));
      fee = min;
    } else if (max && fee.gt(max)) {
      maxCount += 1;
      maxAdjustments.push(max.minus(fee));
      fee = max;
    }
    charged.push(chargeable);
    fees.push(fee);
  }

  const base = sum(charged);
  const rows: BreakdownRow[] = [];
  if (hasFreeUnits) {
    const limits = [freeEvents > 0 && `first ${freeEvents} events`, freeAmount.gt(0) && `first ${price.freeAmount} of amount`].filter(Boolean).join(' or ');
    rows.push({
      description: `Free units (${limits}): ${plural(freeEventCount, 'event')} free, ${fmt(freeAmountUsed)} of the amount free of the rate`,
      units: fmt(freeAmountUsed),
      amount: '0',
    });
  }
  rows.push({ description: `${price.rate}% of ${fmt(base)} (${plural(charged.length, 'charged event')})`, units: fmt(base), unitPrice: fmt(factor), amount: fmt(base.times(factor)) });
  if (price.fixedFeePerEvent !== undefined) {
    rows.push({
      description: `Fixed fee ${price.fixedFeePerEvent} × ${plural(charged.length, 'charged event')}`,
      units: String(charged.length),
      unitPrice: price.fixedFeePerEvent,
      amount: fmt(fixedFee.times(charged.length)),
    });
  }
  if (minCount > 0) rows.push({ description: `Per-transaction minimum ${price.perEventMin}: ${plural(minCount, 'event')} raised to it`, units: String(minCount), amount: fmt(sum(minAdjustments)) });
  if (maxCount > 0) rows.push({ description: `Per-transaction maximum ${price.perEventMax}: ${plural(maxCount, 'event')} capped at it`, units: String(maxCount), amount: fmt(sum(maxAdjustments)) });
  return { amount: sum(fees), rows, billedQuantity: base };
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}
