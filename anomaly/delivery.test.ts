import { describe, expect, it } from 'vitest';
import { alertBody } from './alerts.ts';
import { afterAttempt, DEFAULT_RETRY_DELAYS_MS, deliveryId, pendingState, type DeliveryState } from './delivery.ts';
import type { Anomaly } from './store.ts';
import { sampleAnomaly } from './test-anomaly.ts';

const T0 = Date.UTC(2026, 2, 18, 14, 0);
const MIN = 60_000;
const HOUR = 60 * MIN;

const anomaly: Anomaly = sampleAnomaly({ severity: 'warning', score: 9 });

describe('deliveryId', () => {
  it('is one delivery per alert event × webhook: the same event again is the same id, another event or webhook another', () => {
    const id = deliveryId('anomaly.opened', anomaly, 'whk_a');
    expect(deliveryId('anomaly.opened', structuredClone(anomaly), 'whk_a')).toBe(id);
    expect(new Set([id, deliveryId('anomaly.opened', anomaly, 'whk_b'), deliveryId('anomaly.escalated', anomaly, 'whk_a'), deliveryId('anomaly.resolved', anomaly, 'whk_a')]).size).toBe(4);
    // A second escalation of the same anomaly (a later detection) is a delivery of its own.
    const later = { ...anomaly, lastDetectedAt: '2026-03-18T15:05:00.000Z' };
    expect(deliveryId('anomaly.escalated', later, 'whk_a')).not.toBe(deliveryId('anomaly.escalated', anomaly, 'whk_a'));
    expect(id).toMatch(/^dlv_[0-9a-f]{24}$/);
  });
});

describe('afterAttempt', () => {
  const pending = pendingState({ id: 'dlv_1', webhookId: 'whk_a', event: 'anomaly.opened', anomaly }, T0);

  it('a 2xx delivers and acks', () => {
    const r = afterAttempt(pending, { ok: true, httpStatus: 204, error: '' }, T0 + 1000);
    expect(r.action).toEqual({ type: 'ack' });
    expect(r.state).toMatchObject({ status: 'delivered', attempts: 1, lastStatus: 204, lastError: '', nextAttemptAt: null, deliveredAt: new Date(T0 + 1000).toISOString() });
  });

  it('a failure naks with the next wait (1 min, 5 min, 30 min, 2 h, 6 h, 6 h, 9 h) and gives up after the last, about a day later', () => {
    let s: DeliveryState = pending;
    let now = T0;
    const waits: number[] = [];
    for (;;) {
      const r = afterAttempt(s, { ok: false, httpStatus: 503, error: 'HTTP 503' }, now);
      s = r.state;
      if (r.action.type !== 'nak') {
        expect(r.action).toEqual({ type: 'term' });
        break;
      }
      expect(s).toMatchObject({ status: 'retrying', lastStatus: 503, lastError: 'HTTP 503', nextAttemptAt: new Date(now + r.action.delayMs).toISOString() });
      waits.push(r.action.delayMs);
      now += r.action.delayMs;
    }
    expect(waits).toEqual([MIN, 5 * MIN, 30 * MIN, 2 * HOUR, 6 * HOUR, 6 * HOUR, 9 * HOUR]);
    expect(waits).toEqual([...DEFAULT_RETRY_DELAYS_MS]);
    expect(s).toMatchObject({ status: 'failed', attempts: 8, nextAttemptAt: null, deliveredAt: null });
    expect((now - T0) / HOUR).toBeGreaterThan(23);
    expect((now - T0) / HOUR).toBeLessThan(25);
  });

  it('takes the waits it is given; a long error is cut to 500 characters', () => {
    const r = afterAttempt(pending, { ok: false, httpStatus: 0, error: 'x'.repeat(900) }, T0, [10]);
    expect(r.action).toEqual({ type: 'nak', delayMs: 10 });
    expect(r.state.lastError).toHaveLength(500);
    expect(afterAttempt(r.state, { ok: false, httpStatus: 0, error: 'refused' }, T0 + 10, [10]).action).toEqual({ type: 'term' });
  });
});

describe('alertBody', () => {
  it('a resolution in Slack says resolved, with the note', () => {
    const resolved = { ...anomaly, status: 'resolved' as const, resolvedBy: 'meterline', resolutionNote: 'usage back to normal' };
    expect((JSON.parse(alertBody({ format: 'slack' }, 'anomaly.resolved', resolved)) as { text: string }).text).toBe(':white_check_mark: resolved: spike for acme (api-calls): usage back to normal');
    expect(JSON.parse(alertBody({ format: 'json' }, 'anomaly.resolved', resolved))).toEqual({ type: 'anomaly.resolved', anomaly: resolved });
  });
});
