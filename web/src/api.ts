/**
 * The REST API as the UI calls it: the key (or portal token) the user signed in with, kept in
 * sessionStorage for this tab only, sent as a Bearer token. Errors keep the API's code and message.
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface Session {
  get(): string | null;
  set(token: string): void;
  clear(): void;
}

export function session(storageKey: string): Session {
  return {
    get: () => sessionStorage.getItem(storageKey),
    set: (t) => sessionStorage.setItem(storageKey, t),
    clear: () => sessionStorage.removeItem(storageKey),
  };
}

export type Query = Record<string, string | string[] | undefined>;

export function qs(q: Query = {}): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) {
    if (v === undefined) continue;
    for (const x of Array.isArray(v) ? v : [v]) p.append(k, x);
  }
  const s = p.toString();
  return s ? `?${s}` : '';
}

export interface Api {
  get<T>(path: string, q?: Query): Promise<T>;
  post<T>(path: string, body?: unknown): Promise<T>;
  patch<T>(path: string, body: unknown): Promise<T>;
  del(path: string): Promise<void>;
}

/** `onUnauthorized` runs on a 401 (key revoked or expired): the UI signs out. */
export function createApi(s: Session, onUnauthorized: () => void): Api {
  const call = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const token = s.get();
    const res = await fetch(path, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!res.ok) {
      const e = (json ?? {}) as { code?: string; message?: string };
      if (res.status === 401) onUnauthorized();
      throw new ApiError(res.status, e.code ?? 'HTTP_' + res.status, e.message ?? `${method} ${path}: HTTP ${res.status}`);
    }
    return json as T;
  };
  return {
    get: (path, q) => call('GET', path + qs(q)),
    post: (path, body) => call('POST', path, body ?? {}),
    patch: (path, body) => call('PATCH', path, body),
    del: (path) => call('DELETE', path),
  };
}
