// Bundles the web vault (src/web/app) into dist/web with esbuild. Asset names carry a
// content hash so the server can let browsers cache them for good; index.html points at
// the hashed names and is never cached.
//
//   node scripts/build-web.mjs [--out DIR] [--sourcemap]
//
// A production build has no source maps: they would hand the vault's sources to anyone.
// --sourcemap writes them beside the bundles for debugging, unlinked; the server never
// serves .map files (src/web/serve.ts).
import { build } from 'esbuild';
import { parseArgs } from 'node:util';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src/web');
const { values: args } = parseArgs({ options: { out: { type: 'string' }, sourcemap: { type: 'boolean', default: false } } });
const out = args.out ? resolve(args.out) : join(root, 'dist/web');

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'assets'), { recursive: true });

const result = await build({
  absWorkingDir: root,
  entryPoints: { app: join(src, 'app/main.ts'), 'app-style': join(src, 'app/styles.css') },
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022', 'chrome110', 'firefox110', 'safari16'],
  minify: true,
  sourcemap: args.sourcemap ? 'external' : false,
  legalComments: 'none',
  entryNames: '[name]-[hash]',
  outdir: join(out, 'assets'),
  metafile: true,
  logLevel: 'warning',
});

const names = {};
for (const [file, meta] of Object.entries(result.metafile.outputs)) {
  if (!meta.entryPoint || file.endsWith('.map')) continue;
  names[meta.entryPoint.endsWith('.css') ? 'css' : 'js'] = basename(file);
}
if (!names.js || !names.css) throw new Error(`build-web: missing outputs ${JSON.stringify(names)}`);

const html = readFileSync(join(src, 'index.html'), 'utf8')
  .replace('/assets/app.js', `/assets/${names.js}`)
  .replace('/assets/app.css', `/assets/${names.css}`);
writeFileSync(join(out, 'index.html'), html);
copyFileSync(join(src, 'favicon.svg'), join(out, 'favicon.svg'));
console.log(`web vault: dist/web (${names.js}, ${names.css})`);
