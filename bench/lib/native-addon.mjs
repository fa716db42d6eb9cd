/**
 * The benchmarks' own small native addons (bench/native/NAME.c: mallinfo.c, glibc's malloc
 * counters), compiled on first use with the system C compiler against the running Node's headers
 * (they ship with Node) into bench/native/build/, rebuilt when the source is newer. No node-gyp:
 * nothing is downloaded. (The gateway's own addon, native/pg-relay.c, is built by `npm run
 * build`, scripts/build-native.mjs.)
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureTool } from './pg-relays.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** Builds bench/native/NAME.c if needed; returns the .node file's path. */
export function buildAddon(name) {
  const source = join(root, 'bench/native', `${name}.c`);
  const out = join(root, 'bench/native/build', `${name}-${process.versions.modules}.node`);
  if (existsSync(out) && statSync(out).mtimeMs >= statSync(source).mtimeMs) return out;
  const include = join(dirname(process.execPath), '..', 'include', 'node');
  if (!existsSync(join(include, 'node_api.h'))) throw new Error(`no Node headers at ${include}`);
  // A fresh machine may have no compiler: gcc comes through the test targets' install lock.
  ensureTool('cc', 'gcc');
  mkdirSync(dirname(out), { recursive: true });
  execFileSync('cc', ['-O2', '-Wall', '-shared', '-fPIC', '-pthread', `-I${include}`, `-DNODE_GYP_MODULE_NAME=${name.replace(/-/g, '_')}`, '-o', out, source], { stdio: 'inherit' });
  return out;
}

/** Builds and loads bench/native/NAME.c. */
export function loadAddon(name) {
  return createRequire(import.meta.url)(buildAddon(name));
}
