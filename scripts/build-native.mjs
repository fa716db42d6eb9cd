#!/usr/bin/env node
/**
 * Builds the PostgreSQL door's native data path (native/pg-relay.c) with the system C compiler
 * against the running Node's headers (Node ships them, OpenSSL's among them; OpenSSL's symbols
 * come from the node binary at load time): no node-gyp, nothing downloaded. The result goes to
 * native/build/ (for the sources, as the tests run them) and dist/native/build/ (the package).
 * A machine that cannot build it gets a warning and the door's JavaScript data path.
 *
 *   node scripts/build-native.mjs
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const source = join(root, 'native/pg-relay.c');
const out = join(root, 'native/build/pg-relay.node');
const facts = out.replace(/\.node$/, '.json');

function build() {
  if (existsSync(out) && existsSync(facts) && statSync(out).mtimeMs >= statSync(source).mtimeMs) return;
  const include = join(dirname(process.execPath), '..', 'include', 'node');
  if (!existsSync(join(include, 'node_api.h')) || !existsSync(join(include, 'openssl', 'ssl.h'))) throw new Error(`no Node headers with OpenSSL's at ${include}`);
  mkdirSync(dirname(out), { recursive: true });
  const tmp = `${out}.tmp`;
  execFileSync('cc', ['-O2', '-Wall', '-shared', '-fPIC', '-pthread', `-I${include}`, '-DNODE_GYP_MODULE_NAME=pg_relay', '-o', tmp, source], { stdio: ['ignore', 'inherit', 'inherit'] });
  renameSync(tmp, out);
  writeFileSync(facts, `${JSON.stringify({ openssl: process.versions.openssl, node: process.version, napi: 8 })}\n`);
}

try {
  build();
  const dist = join(root, 'dist/native/build');
  mkdirSync(dist, { recursive: true });
  // A new file renamed into place: a gateway running from dist/ keeps the one it has mapped
  // (writing over it in place would change a loaded library under it).
  for (const [from, name] of [[out, 'pg-relay.node'], [facts, 'pg-relay.json']]) {
    copyFileSync(from, join(dist, `${name}.tmp`));
    renameSync(join(dist, `${name}.tmp`), join(dist, name));
  }
} catch (e) {
  console.warn(`gatehouse: the native PostgreSQL data path was not built (${e.message.split('\n')[0]}); the door will use its JavaScript one.`);
}
