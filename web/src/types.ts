/** Shapes of the API responses the UI reads (see /openapi.json). Every quantity and amount is a decimal string. */
export interface WhoAmI {
  id: string;
  name: string;
  scopes: string[];
  prefix: string;
}

export interface AccountSummary {
  asOf?: string;
  customer: { key: string; name: string; currency: string; timeZone: string };
  period: { start: string; end: string; source: 'subscription' | 'calendar_month' };
  subscriptions: { id: string; plan: string; planName: string }[];
  usage: { meter: string; name: string; aggregation: string; value: string }[];
  projected: { amountSoFar: string; projectedTotal: string; currency: string } | null;
  projectedError?: string;
  openAnomalies: number;
  worstSeverity: string | null;
}

export interface Meter {
  id: string;
  slug: string;
  name?: string;
  eventType: string;
  aggregation: string;
  valueProperty?: string;
  groupBy?: Record<string, string> | string[];
}

export interface UsageRow {
  value: string;
  windowStart: string;
  windowEnd: string;
  subject: string | null;
  groupBy: Record<string, string>;
}

export interface UsageResult {
  from?: string;
  to: string;
  windowSize?: string;
  data: UsageRow[];
  source: string;
}

export interface BreakdownRow {
  description: string;
  units: string;
  unitPrice?: string;
  flatFee?: string;
  amount: string;
  dimensionValue?: string;
  tier?: string;
}

export interface InvoiceLine {
  id: string;
  kind: string;
  description: string;
  meter?: string;
  periodStart: string;
  periodEnd: string;
  quantity: string;
  unitPrice?: string;
  amount: string;
  amountMinor: string;
  breakdown: BreakdownRow[];
}

export interface Invoice {
  id: string;
  number?: string;
  customer: string;
  currency: string;
  periodStart: string;
  periodEnd: string;
  status: string;
  cutoff: string;
  issuedAt?: string;
  lines: InvoiceLine[];
  total: string;
  totalMinor: string;
}

export type InvoiceHead = Omit<Invoice, 'lines'> & { lineCount: number };

export interface Projected {
  customer: string;
  subscriptions: { periodStart: string; periodEnd: string; elapsedShare: string; amountSoFar: string; projectedTotal: string; currency: string; soFar: Invoice; projected: Invoice }[];
}

export interface Anomaly {
  id: string;
  customer?: string;
  meter: string;
  kind: string;
  status: string;
  severity: string;
  message: string;
  windowStart: string;
  windowEnd: string;
  firstDetectedAt: string;
  lastDetectedAt: string;
  detections?: number;
  acknowledgedBy?: string;
  acknowledgedAt?: string | null;
  resolvedBy?: string;
  resolvedAt?: string | null;
  resolutionNote?: string;
}

export interface Adjustment {
  id: string;
  customer: string;
  kind: string;
  currency: string;
  amount: string;
  meter: string;
  quantity: string;
  periodStart: string | null;
  expiresAt: string | null;
  reasonCode: string;
  note: string;
  actor: string;
  createdAt: string;
}

export interface PortalTokenRecord {
  id: string;
  customer: string;
  name: string;
  prefix: string;
  createdAt: string;
  expiresAt: string | null;
  createdBy: string;
}
