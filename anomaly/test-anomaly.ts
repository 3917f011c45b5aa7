import type { Anomaly } from './store.ts';

/** A stored anomaly for tests (an open spike on acme's API calls), with `overrides`. */
export function sampleAnomaly(overrides: Partial<Anomaly> = {}): Anomaly {
  return {
    id: 'anom_1',
    customer: 'acme',
    meter: 'api-calls',
    kind: 'spike',
    status: 'open',
    severity: 'critical',
    score: 12,
    windowStart: '2026-03-18T13:00:00.000Z',
    windowEnd: '2026-03-18T14:00:00.000Z',
    observed: 1000,
    baseline: 100,
    spread: 0.1,
    message: '10× the usual API calls',
    detail: {},
    detections: 1,
    firstDetectedAt: '2026-03-18T14:05:00.000Z',
    lastDetectedAt: '2026-03-18T14:05:00.000Z',
    acknowledgedBy: '',
    acknowledgedAt: null,
    resolvedBy: '',
    resolvedAt: null,
    resolutionNote: '',
    ...overrides,
  };
}
