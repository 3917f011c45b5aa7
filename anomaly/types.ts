/**
 * Anomaly detection contract. The scoring is pure (this folder's `detect.ts`); the scan
 * (`scan.ts`) reads hourly rollups, calls it, and stores and alerts on what it returns.
 *
 * Usage values here are statistics inputs, not money: plain numbers are fine.
 */
export const AnomalyKinds = ['spike', 'drop', 'gap', 'bill_shock', 'threshold'] as const;
export type AnomalyKind = (typeof AnomalyKinds)[number];

export const Severities = ['info', 'warning', 'critical'] as const;
export type Severity = (typeof Severities)[number];

export interface DetectorParams {
  /** Weeks of history the seasonal baseline uses (same local hour of the week, in the customer's zone). */
  baselineWeeks: number;
  /**
   * Robust z-score above which a spike or drop is flagged. The z-score is taken on a
   * variance-stabilised scale (Poisson counting noise plus the multiplicative spread from the
   * MAD of the weekly samples' logs): log-scale |log observed - log median| / scaled MAD at high
   * volume, the Poisson test at low volume; see `detect.ts`.
   */
  zThreshold: number;
  /** Minimum ratio observed/baseline for a spike (and baseline/observed for a drop), so tiny spreads do not alert. */
  minRatio: number;
  /** Below this expected count per hour a series is "low volume": Poisson noise, not anomalies. */
  minExpected: number;
  /** Hours in a row with no events, while events were expected, before a gap is raised. */
  gapHours: number;
  /** Floor of the baseline's log-scale spread (≈ relative spread: 0.1 = no series is taken to be steadier than ±10 %). Default in DEFAULT_DETECTOR_PARAMS. */
  spreadFloor?: number;
  /** Hours before the judged hour whose level against the same hours in the baseline weeks rescales the baseline (growth is not a spike); 0 turns this off. */
  levelWindowHours?: number;
  /** Expected events over a silent run below which silence is plausible (P(no events) = e^-expected), so no gap. */
  gapMinExpected?: number;
  /** Expected count per hour from which an hour counts as normally active; a gap needs `gapHours` such hours. */
  activeHourExpected?: number;
  /** Expected events (over the dispersion) in one silent hour from which that hour alone is a gap (a short total outage of a busy customer); every weekly sample must have had at least half of it. */
  outageMinExpected?: number;
}

export const DEFAULT_DETECTOR_PARAMS: Required<DetectorParams> = {
  baselineWeeks: 4,
  zThreshold: 4.5,
  minRatio: 2,
  minExpected: 5,
  gapHours: 2,
  spreadFloor: 0.1,
  levelWindowHours: 168,
  gapMinExpected: 20,
  activeHourExpected: 1,
  outageMinExpected: 200,
};

export interface HourlySeries {
  /** Start of the first hour (UTC ms, on an hour boundary). */
  startMs: number;
  /** One value per hour, oldest first; 0 for hours without events. The last value is the hour being judged. */
  values: number[];
}

export interface Detection {
  kind: AnomalyKind;
  severity: Severity;
  /** How far from normal, larger is worse (robust z-score magnitude for spike/drop, hours silent for gap, ratio for bill shock). */
  score: number;
  /** The window judged, half-open [start, end), UTC ms. */
  windowStartMs: number;
  windowEndMs: number;
  /** Usage in the window (0 for a gap). */
  observed: number;
  /** Expected usage in the window (for a gap: over all its hours). */
  baseline: number;
  /** ± around the baseline, same units (spike/drop: week-to-week and counting noise combined). */
  spread: number;
  /** A sentence a person understands, e.g. "14,200 API calls in the hour to 14:00, usually 2,100 ± 300 at this hour". */
  message: string;
}

export interface DescribeOptions {
  /** What is counted, plural, e.g. "API calls" or "tokens". */
  unit: string;
  /** IANA zone for the times in messages. */
  timeZone: string;
}

/**
 * An anomaly as stored and as GET /api/v1/anomalies returns it (`Anomaly` of ./store.ts, here so
 * the browser code can import the type; api/contracts.test.ts checks at compile time that the
 * two stay equal).
 */
export interface AnomalyRecord {
  id: string;
  customer: string;
  /** Meter slug; empty for bill shock (the whole invoice). */
  meter: string;
  kind: AnomalyKind;
  status: 'open' | 'acknowledged' | 'resolved';
  severity: Severity;
  score: number;
  windowStart: string;
  windowEnd: string;
  observed: number;
  baseline: number;
  spread: number;
  message: string;
  detail: Record<string, unknown>;
  detections: number;
  firstDetectedAt: string;
  lastDetectedAt: string;
  acknowledgedBy: string;
  acknowledgedAt: string | null;
  resolvedBy: string;
  resolvedAt: string | null;
  resolutionNote: string;
}
