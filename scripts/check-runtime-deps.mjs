// Checks that every package the built gateway imports at run time is a `dependency`, so a
// production install (`npm ci --omit=dev`, or the packed tarball) can run it.
//
//   node scripts/check-runtime-deps.mjs [PACKAGE_DIR]     (default: this repository)
//
// Walks the import graph of the built JavaScript from the package's `bin` entries: static
// imports and re-exports, `import()` with a literal specifier, `require()` (createRequire)
// and pino transport targets (a package named in a string, loaded by pino at run time).
// Relative specifiers are followed; bare ones are reduced to their package name. Prints
// one line per problem and exits 1, or prints the packages found and exits 0.
//
// Needs the build (`npm run build`) first: it reads dist/, not the TypeScript sources.
import { existsSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SPECIFIERS = [
  /\bimport\s+(?:[\w*{}\s,$]+\s+from\s+)?['"]([^'"]+)['"]/g,
  /\bexport\s+(?:\*|\{[^}]*\})(?:\s+as\s+\w+)?\s+from\s+['"]([^'"]+)['"]/g,
  /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,
  /\brequire\(\s*['"]([^'"]+)['"]\s*\)/g,
];
/** pino resolves `transport: { target: 'pino-pretty' }` itself, out of sight of the import graph. */
const PINO_TARGET = /\btarget:\s*['"]([^'"./][^'"]*)['"]/g;
const BUILTINS = new Set(builtinModules);

/** `@scope/name/sub/path.js` → `@scope/name`; `name/sub` → `name`. */
export function packageName(specifier) {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

function isBuiltin(specifier) {
  return specifier.startsWith('node:') || BUILTINS.has(specifier) || BUILTINS.has(specifier.split('/')[0]);
}

/** Every file reachable from `entries`, and the packages each bare import names (with the first file that named it). */
export function importGraph(entries) {
  const seen = new Set();
  const packages = new Map();
  const problems = [];
  const queue = [...entries];
  while (queue.length > 0) {
    const file = queue.shift();
    if (seen.has(file)) continue;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    const found = SPECIFIERS.flatMap((re) => [...text.matchAll(re)].map((m) => m[1]));
    if (/\bfrom\s+['"]pino['"]/.test(text)) found.push(...[...text.matchAll(PINO_TARGET)].map((m) => m[1]));
    for (const spec of found) {
      if (spec.startsWith('.') || spec.startsWith('/')) {
        const target = resolve(dirname(file), spec);
        if (existsSync(target)) queue.push(target);
        else problems.push(`${file}: imports ${spec}, which is not there (${target})`);
      } else if (!isBuiltin(spec)) {
        const name = packageName(spec);
        if (!packages.has(name)) packages.set(name, file);
      }
    }
  }
  return { files: [...seen], packages, problems };
}

/** Problems with `dir`'s package.json against what its built code imports. */
export function checkRuntimeDeps(dir) {
  const pkg = JSON.parse(readFileSync(resolve(dir, 'package.json'), 'utf8'));
  const bins = typeof pkg.bin === 'string' ? [pkg.bin] : Object.values(pkg.bin ?? {});
  const entries = [...bins, ...(pkg.main ? [pkg.main] : [])].map((p) => resolve(dir, p));
  const missingEntries = entries.filter((e) => !existsSync(e));
  if (missingEntries.length > 0) return { files: [], packages: new Map(), problems: missingEntries.map((e) => `entry ${e} does not exist`) };
  const graph = importGraph(entries);
  const runtime = new Set([...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.optionalDependencies ?? {})]);
  for (const [name, file] of graph.packages) {
    if (runtime.has(name)) continue;
    const where = pkg.devDependencies?.[name] ? 'a devDependency only' : 'in no dependency list';
    graph.problems.push(`${name} is imported by ${relative(dir, file)} but is ${where}: move it to "dependencies"`);
  }
  return graph;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dir = resolve(process.argv[2] ?? resolve(dirname(fileURLToPath(import.meta.url)), '..'));
  const { files, packages, problems } = checkRuntimeDeps(dir);
  if (problems.length > 0) {
    for (const p of problems) process.stderr.write(`check-runtime-deps: ${p}\n`);
    process.exit(1);
  }
  process.stdout.write(`${files.length} files reachable from the bin; runtime packages: ${[...packages.keys()].sort().join(', ')}\n`);
}
