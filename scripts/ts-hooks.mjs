/**
 * Module hooks for ts-register.mjs: an import of `./x.js` from a TypeScript file resolves to
 * `./x.ts` when only that exists (the sources import their siblings by the compiled name),
 * and a `.ts` file is stripped of its types by esbuild (a dev dependency, through vite).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { transform } from 'esbuild';

export async function resolve(specifier, context, next) {
  if (specifier.endsWith('.js') && context.parentURL?.endsWith('.ts') && (specifier.startsWith('.') || specifier.startsWith('/'))) {
    const js = new URL(specifier, context.parentURL);
    if (!existsSync(fileURLToPath(js))) {
      const ts = new URL(specifier.replace(/\.js$/, '.ts'), context.parentURL);
      if (existsSync(fileURLToPath(ts))) return { url: ts.href, shortCircuit: true, format: 'module' };
    }
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (!url.endsWith('.ts')) return next(url, context);
  const { source } = await next(url, { ...context, format: 'module' });
  const out = await transform(String(source), { loader: 'ts', format: 'esm', target: 'node20', sourcefile: fileURLToPath(url), sourcemap: 'inline' });
  return { format: 'module', source: out.code, shortCircuit: true };
}
