/// <reference lib="dom" />

/** A refusal from the API, with its stable code and the field it names (for inline errors). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  get field(): string | undefined {
    return typeof this.details.field === 'string' ? this.details.field : undefined;
  }
}

// Session storage: the token lives as long as the tab, and is never sent as a cookie, so
// other sites cannot ride on it (no CSRF surface).
const TOKEN_KEY = 'gatehouse.token';

export const session = {
  get token(): string | null {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set(token: string): void {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear(): void {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

let onSignedOut: () => void = () => undefined;

/** Called when the API says the token is no longer good (expired, revoked, user disabled). */
export function whenSignedOut(fn: () => void): void {
  onSignedOut = fn;
}

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

export async function api<T>(method: Method, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  const token = session.token;
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(`/api/v1${path}`, {
      method, headers, credentials: 'omit', cache: 'no-store', ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch {
    throw new ApiError(0, 'NETWORK', 'The gateway cannot be reached right now; try again.');
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (res.ok) return json as T;
  const err = (json as { error?: { code?: string; message?: string; details?: Record<string, unknown> } } | undefined)?.error;
  const e = new ApiError(res.status, err?.code ?? `HTTP_${res.status}`, err?.message ?? `The gateway answered ${res.status}.`, err?.details ?? {});
  if (e.code === 'UNAUTHENTICATED' && path !== '/auth/login') {
    session.clear();
    onSignedOut();
  }
  throw e;
}

/** Encodes one path segment (resource names, ids). */
export function seg(s: string): string {
  return encodeURIComponent(s);
}
