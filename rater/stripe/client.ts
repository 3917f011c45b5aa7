import Stripe from 'stripe';

export interface StripeClientOptions {
  /** Secret key (`sk_live_...`, `sk_test_...`) or restricted key (`rk_...`). */
  apiKey: string;
  /**
   * Where the API is, as a URL without a path: unset for Stripe itself (https://api.stripe.com),
   * or e.g. `http://127.0.0.1:12111` for a local fake or stripe-mock.
   */
  apiBase?: string;
  /** Per-request timeout; stripe-node's default is 80 s. */
  timeoutMs?: number;
}

/**
 * The Stripe client the sync expects: stripe-node's own retries off (`maxNetworkRetries: 0`;
 * StripeSync retries, with the same idempotency keys, and logs each attempt), the API version
 * pinned by the installed stripe-node. Called from an entry point with values from config.
 */
export function createStripeClient(opts: StripeClientOptions): Stripe {
  const config: ConstructorParameters<typeof Stripe>[1] = {
    maxNetworkRetries: 0,
    appInfo: { name: 'meterline' },
  };
  if (opts.timeoutMs !== undefined) config.timeout = opts.timeoutMs;
  if (opts.apiBase !== undefined) {
    const url = new URL(opts.apiBase);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`Stripe API base ${opts.apiBase}: use an http:// or https:// URL`);
    if (url.pathname !== '/' || url.search !== '') throw new Error(`Stripe API base ${opts.apiBase}: stripe-node takes a host and port only, no path or query`);
    const protocol = url.protocol === 'http:' ? 'http' : 'https';
    config.host = url.hostname;
    config.port = url.port || (protocol === 'http' ? '80' : '443');
    config.protocol = protocol;
  }
  return new Stripe(opts.apiKey, config);
}
