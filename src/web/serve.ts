import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Serves the built web vault (dist/web) as the API server's fallback: the SPA shell for `/`
 * and every client route, the hashed bundle and stylesheet, and a 404 for anything else.
 */

/** No inline script or style, nothing from other origins; the WebSocket is same-origin. */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.webmanifest': 'application/manifest+json',
  '.txt': 'text/plain; charset=utf-8',
};

/** Bundles carry a content hash in their name (scripts/build-web.mjs), so they never change. */
const HASHED = /^\/assets\/[\w.-]+-[A-Z0-9]{8}\.(js|css)$/;

/**
 * Source maps give out the vault's sources; production builds make none, and one found on
 * disk anyway (a `--sourcemap` build for debugging) is not served either.
 */
const NEVER_SERVED = /\.map$/i;

interface Cached {
  mtimeMs: number;
  size: number;
  body: Buffer;
  etag: string;
}

export type WebHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

/**
 * Where `npm run build` put the vault: dist/web beside the compiled dist/src, or, when
 * running from the TypeScript sources, the repository's dist/web.
 */
export function builtWebDir(): string {
  const beside = fileURLToPath(new URL('../../web', import.meta.url));
  return existsSync(resolve(beside, 'index.html')) ? beside : fileURLToPath(new URL('../../dist/web', import.meta.url));
}

export function serveWeb(dir: string = builtWebDir()): WebHandler {
  const root = resolve(dir);
  const cache = new Map<string, Cached>();

  const load = async (file: string): Promise<Cached | undefined> => {
    const st = await stat(file).catch(() => undefined);
    if (!st?.isFile()) return undefined;
    const hit = cache.get(file);
    if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit;
    const body = await readFile(file);
    const entry = { mtimeMs: st.mtimeMs, size: st.size, body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` };
    cache.set(file, entry);
    return entry;
  };

  return async (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const path = safePath(req.url ?? '/');
    if (path === undefined) {
      notFound(res, 400, 'bad path');
      return true;
    }
    const asked = resolve(root, `.${path}`);
    if ((asked !== root && !asked.startsWith(root + sep)) || NEVER_SERVED.test(path)) {
      notFound(res, 404, 'not found');
      return true;
    }
    let file = asked;
    let entry = path.endsWith('/') ? undefined : await load(asked);
    // Anything that is not an asset is a client route (resource names may contain dots): the app shell.
    if (!entry && !path.startsWith('/assets/') && !Object.hasOwn(TYPES, extname(path))) {
      file = resolve(root, 'index.html');
      entry = await load(file);
      if (!entry) {
        notFound(res, 404, 'the web vault is not built: run npm run build');
        return true;
      }
    }
    if (!entry) {
      notFound(res, 404, 'not found');
      return true;
    }
    const type = TYPES[extname(file)] ?? 'application/octet-stream';
    const headers: Record<string, string | number> = {
      'content-type': type,
      'cache-control': HASHED.test(path) ? 'public, max-age=31536000, immutable' : 'no-cache',
      etag: entry.etag,
      'content-security-policy': CONTENT_SECURITY_POLICY,
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-resource-policy': 'same-origin',
      'permissions-policy': 'camera=(), microphone=(), geolocation=(), payment=()',
    };
    if (req.headers['if-none-match'] === entry.etag) {
      res.writeHead(304, headers);
      res.end();
      return true;
    }
    headers['content-length'] = entry.body.length;
    res.writeHead(200, headers);
    res.end(req.method === 'HEAD' ? undefined : entry.body);
    return true;
  };
}

/**
 * The decoded URL path, or undefined when it is malformed or tries to leave the web root:
 * `..` segments, encoded slashes or backslashes, NUL bytes, and dotfiles are refused.
 */
export function safePath(url: string): string | undefined {
  const raw = url.split(/[?#]/, 1)[0] ?? '/';
  if (/%2f|%5c/i.test(raw)) return undefined;
  let path: string;
  try {
    path = decodeURIComponent(raw);
  } catch {
    return undefined;
  }
  if (!path.startsWith('/') || path.includes('\0') || path.includes('\\')) return undefined;
  if (path.split('/').some((s) => s.startsWith('.'))) return undefined;
  return path;
}

function notFound(res: ServerResponse, status: number, message: string): void {
  const body = `${message}\n`;
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'content-security-policy': CONTENT_SECURITY_POLICY,
  });
  res.end(body);
}
