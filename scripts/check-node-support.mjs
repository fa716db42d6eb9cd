// Static checks behind the Node versions that package.json's `engines` names (Node 20.19+,
// 22 and 24 LTS): what can be checked without running those versions.
//
//   node scripts/check-node-support.mjs [PACKAGE_DIR]     (default: this repository)
//
// 1. Every installed production package (the tree `npm ls --omit=dev` prints, read from
//    PACKAGE_DIR's node_modules, or from the node_modules an installed package sits in)
//    accepts the first and a late release of each supported line in its own `engines`.
// 2. The built JavaScript (bin/ and dist/) uses none of the Node APIs that were removed or
//    runtime-deprecated in Node 21-24, nor import assertions (`assert { type }`, gone in 22).
//
// What it cannot see: a behaviour change behind an unchanged API, and dependencies' own code.
// The type check covers the other direction (nothing newer than 20.19): tsconfig's lib is
// ES2023 and @types/node is ^20.19, so an API that Node 20 lacks does not compile.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** [pattern, what it is, from which Node version it breaks]. */
export const REMOVED_APIS = [
  [/\bassert\s*\{\s*type\s*:/, 'import assertion (`assert { type }`)', 'removed in Node 22: use `with { type }`'],
  [/\bcrypto\.createCipher\(|\bcreateCipher\(|\bcreateDecipher\(/, 'crypto.createCipher/createDecipher', 'removed in Node 22'],
  [/\butil\.is(Array|Boolean|Buffer|Date|Error|Function|Null|NullOrUndefined|Number|Object|Primitive|RegExp|String|Symbol|Undefined)\(/, 'util.isX() type checks', 'removed in Node 23'],
  [/\butil\._extend\(/, 'util._extend', 'runtime-deprecated since Node 22'],
  [/\bprocess\.assert\(/, 'process.assert', 'removed in Node 23'],
  [/\bprocess\.binding\(/, 'process.binding', 'deprecated, partly removed'],
  [/\bcreateSecurePair\(/, 'tls.createSecurePair', 'removed in Node 24'],
  [/\bnew Buffer\(/, 'new Buffer()', 'runtime-deprecated (DEP0005)'],
  [/\bSlowBuffer\b/, 'SlowBuffer', 'runtime-deprecated in Node 22, removed in 25'],
  [/\bfs\.[FRWX]_OK\b/, 'fs.F_OK/R_OK/W_OK/X_OK', 'removed in Node 24: use fs.constants'],
  [/\burl\.parse\(|\bparse as parseUrl\b/, 'url.parse()', 'runtime-deprecated in Node 24'],
  [/\bCallTracker\b/, 'assert.CallTracker', 'removed in Node 24'],
  [/\bdirent\.path\b|\bentry\.path\b/, 'fs.Dirent.path', 'removed in Node 24: use parentPath'],
  [/--experimental-/, 'an --experimental- flag', 'experimental flags change between lines'],
];

/** The supported lines from an engines range like `^20.19.0 || ^22.12.0 || ^24.0.0`: each line's floor. */
export function supportedFloors(range) {
  return range.split('||').map((part) => {
    const m = /^\s*\^(\d+)\.(\d+)\.(\d+)\s*$/.exec(part);
    if (!m) throw new Error(`engines.node: '${part.trim()}' is not a ^MAJOR.MINOR.PATCH line`);
    return [Number(m[1]), Number(m[2]), Number(m[3])];
  });
}

const cmp = (a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];

/** One comparator (`>=10`, `^16`, `20.x`, `6.*`, `*`) as a [low, high) interval, high exclusive (undefined: none). */
function interval(token) {
  const m = /^(>=|<=|>|<|=|\^|~)?v?(\d+|x|X|\*)?(?:\.(\d+|x|X|\*))?(?:\.(\d+|x|X|\*))?$/.exec(token);
  if (!m) throw new Error(`cannot read version range '${token}'`);
  const [, op = '', ...raw] = m;
  const parts = raw.map((p) => (p === undefined || /^[xX*]$/.test(p) ? undefined : Number(p)));
  const given = parts.findIndex((p) => p === undefined);
  const n = given === -1 ? 3 : given; // how many leading parts are numbers
  const v = parts.map((p) => p ?? 0);
  const bump = (k) => (k === 0 ? [v[0] + 1, 0, 0] : k === 1 ? [v[0], v[1] + 1, 0] : [v[0], v[1], v[2] + 1]);
  if (n === 0) return [[0, 0, 0], undefined];
  switch (op) {
    case '>=': return [v, undefined];
    case '>': return [n === 3 ? bump(2) : bump(n - 1), undefined];
    case '<': return [[0, 0, 0], v];
    case '<=': return [[0, 0, 0], n === 3 ? bump(2) : bump(n - 1)];
    case '^': return [v, v[0] > 0 || n === 1 ? bump(0) : bump(1)];
    case '~': return [v, n === 1 ? bump(0) : bump(1)];
    default: return [v, n === 3 ? bump(2) : bump(n - 1)];
  }
}

/** Whether [major, minor, patch] satisfies an npm range (the subset engines fields use: no prereleases). */
export function satisfies(version, range) {
  return range.split('||').some((set) => {
    const tokens = set.trim().replace(/(>=|<=|>|<|=|\^|~)\s+/g, '$1').split(/\s+/).filter(Boolean);
    if (tokens.length === 3 && tokens[1] === '-') {
      const [lo] = interval(tokens[0]);
      const [, hi] = interval(`<=${tokens[2]}`);
      return cmp(version, lo) >= 0 && cmp(version, hi) < 0;
    }
    return (tokens.length === 0 ? ['*'] : tokens).every((t) => {
      const [lo, hi] = interval(t);
      return cmp(version, lo) >= 0 && (hi === undefined || cmp(version, hi) < 0);
    });
  });
}

/** Every package.json under a node_modules tree (nested trees too), once per path. */
function installedPackages(nodeModules) {
  const out = [];
  const visit = (dir) => {
    if (!existsSync(dir)) return;
    for (const name of readdirSync(dir)) {
      if (name.startsWith('.')) continue;
      const path = join(dir, name);
      if (name.startsWith('@')) {
        visit(path);
        continue;
      }
      const pkgFile = join(path, 'package.json');
      if (!existsSync(pkgFile)) continue;
      out.push({ dir: path, pkg: JSON.parse(readFileSync(pkgFile, 'utf8')) });
      visit(join(path, 'node_modules'));
    }
  };
  visit(nodeModules);
  return out;
}

function jsFiles(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true })
    .map((f) => join(dir, f))
    .filter((f) => /\.(m?js)$/.test(f) && statSync(f).isFile());
}

/**
 * Problems for the package in `dir`. `production`: the packages to check engines for; by
 * default every package in the node_modules that holds `dir` (an installed tarball) or in
 * `dir`/node_modules minus devDependencies-only ones (a checkout: pass the list instead).
 */
export function checkNodeSupport(dir, opts = {}) {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const floors = supportedFloors(pkg.engines?.node ?? '');
  // A late release of each line too, so a range capped inside a line is caught.
  const versions = floors.flatMap((f) => [f, [f[0], 99, 0]]);
  const problems = [];
  const nodeModules = opts.nodeModules ?? (basename(dirname(dir)) === 'node_modules' ? dirname(dir) : join(dir, 'node_modules'));
  const packages = installedPackages(nodeModules).filter((p) => !opts.only || opts.only.has(p.pkg.name));
  for (const { pkg: dep } of packages) {
    const range = dep.engines?.node;
    if (typeof range !== 'string') continue;
    for (const v of versions) {
      if (!satisfies(v, range)) problems.push(`${dep.name}@${dep.version} wants node ${range}, which excludes ${v.join('.')}`);
    }
  }
  const files = [...jsFiles(join(dir, 'bin')), ...jsFiles(join(dir, 'dist', 'src')), ...jsFiles(join(dir, 'dist', 'protocols'))];
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    for (const [re, what, why] of REMOVED_APIS) {
      if (re.test(text)) problems.push(`${relative(dir, file)} uses ${what} (${why})`);
    }
  }
  return { versions: floors.map((f) => f.join('.')), packages: packages.length, files: files.length, problems };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dir = resolve(process.argv[2] ?? resolve(dirname(fileURLToPath(import.meta.url)), '..'));
  const { execFileSync } = await import('node:child_process');
  let only;
  if (!process.argv[2] || existsSync(join(dir, 'package-lock.json'))) {
    // A checkout: its node_modules holds devDependencies too; check the production tree only.
    const parseable = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: dir, encoding: 'utf8' });
    only = new Set(parseable.trim().split('\n').slice(1).map((p) => JSON.parse(readFileSync(join(p, 'package.json'), 'utf8')).name));
  }
  const r = checkNodeSupport(dir, only ? { only } : {});
  if (r.problems.length > 0) {
    for (const p of r.problems) process.stderr.write(`check-node-support: ${p}\n`);
    process.exit(1);
  }
  process.stdout.write(`node ${r.versions.join(', ')} lines: ${r.packages} production packages accept them; ${r.files} built files use no removed Node API\n`);
}
