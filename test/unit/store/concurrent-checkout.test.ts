/**
 * The one-held-lease rule under real contention: several threads, each with its own SQLite
 * connection to one file, race 100 check-outs of one resource. Only the database can settle
 * that race, so exactly one may win.
 *
 * The same harness races audit appends: the chain must come out gapless and linked, which
 * holds only if each append reads the chain head under the write lock.
 *
 * Workers run the real SqliteStore, not a copy of its SQL. Node 20 cannot load TypeScript
 * in a worker thread and the vitest module runner does not reach into workers, so the test
 * transpiles the store's import graph with the project's own TypeScript compiler into a
 * temporary directory (no type checking, no build step, nothing else in the tree involved).
 */
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const STORE_SOURCE = join(ROOT, 'src/store/sqlite/sqlite-store.ts');
const WORKERS = 5;
const ATTEMPTS = 100;

interface Attempt {
  name: string;
  ok: boolean;
  code?: string;
  details?: { resource?: string; holder?: string };
  message?: string;
}

/** Transpiles `entry` and every relative import it reaches into outDir, mirroring the tree under ROOT. */
async function transpileGraph(entry: string, outDir: string): Promise<string> {
  const pending = [entry];
  const done = new Set<string>();
  while (pending.length > 0) {
    const file = pending.pop() as string;
    if (done.has(file)) continue;
    done.add(file);
    const source = await readFile(file, 'utf8');
    const { outputText } = ts.transpileModule(source, {
      fileName: file,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
    });
    const out = join(outDir, relative(ROOT, file)).replace(/\.ts$/, '.js');
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, outputText);
    for (const { fileName } of ts.preProcessFile(source, true, true).importedFiles) {
      if (fileName.startsWith('.')) pending.push(resolve(dirname(file), fileName.replace(/\.js$/, '.ts')));
    }
  }
  // Bare imports (better-sqlite3) resolve from the transpiled tree through the project's node_modules.
  await symlink(join(ROOT, 'node_modules'), join(outDir, 'node_modules'), 'dir');
  return pathToFileURL(join(outDir, relative(ROOT, entry)).replace(/\.ts$/, '.js')).href;
}

/** Starts the workers, releases them together once all are connected, and collects every attempt. */
function race(storeUrl: string, path: string, task: 'checkout' | 'audit', resource: string): Promise<Attempt[]> {
  const barrier = new SharedArrayBuffer(4);
  const gate = new Int32Array(barrier);
  let ready = 0;
  const runs = Array.from({ length: WORKERS }, (_, w) => {
    const names = Array.from({ length: ATTEMPTS / WORKERS }, (_, i) => `w${w}-u${i}`);
    const worker = new Worker(new URL('./race-worker.mjs', import.meta.url), {
      workerData: { storeUrl, path, task, resource, names, barrier },
    });
    return new Promise<Attempt[]>((done, fail) => {
      worker.on('message', (m: { type: 'ready' } | { type: 'done'; results: Attempt[] }) => {
        if (m.type === 'done') return done(m.results);
        // Open the gate only when every worker holds an open connection and is parked on it.
        if (++ready === WORKERS) {
          Atomics.store(gate, 0, 1);
          Atomics.notify(gate, 0);
        }
      });
      worker.on('error', fail);
      worker.on('exit', (code) => fail(new Error(`worker ${w} exited with ${code} before reporting`)));
    });
  });
  return Promise.all(runs).then((all) => all.flat());
}

describe('concurrent check-out across connections', () => {
  let dir: string;
  let storeUrl: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gatehouse-race-'));
    storeUrl = await transpileGraph(STORE_SOURCE, join(dir, 'build'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it(`admits exactly one of ${ATTEMPTS} racing check-outs and refuses the rest with CHECKED_OUT`, async () => {
    const path = join(dir, 'race.db');
    // Migrate up front so the race is about the lease, not about creating the schema.
    const store = SqliteStore.open(path);
    try {
      const attempts = await race(storeUrl, path, 'checkout', 'prod-pg');
      expect(attempts).toHaveLength(ATTEMPTS);
      const winners = attempts.filter((a) => a.ok);
      expect(winners).toHaveLength(1);
      const winner = winners[0]?.name;
      const losers = attempts.filter((a) => !a.ok);
      expect(losers.map((a) => a.code)).toEqual(Array(ATTEMPTS - 1).fill('CHECKED_OUT'));
      for (const loser of losers) expect(loser.details).toMatchObject({ resource: 'prod-pg', holder: winner });

      const leases = await store.listLeases({ resource: 'prod-pg' });
      expect(leases).toHaveLength(1);
      expect(leases[0]).toMatchObject({ holder: winner, state: 'held' });
      expect((await store.getHeldLease('prod-pg'))?.holder).toBe(winner);
    } finally {
      await store.close();
    }
  });

  it('keeps one gapless, linked audit chain when connections append at once', async () => {
    const path = join(dir, 'audit.db');
    const store = SqliteStore.open(path);
    try {
      const attempts = await race(storeUrl, path, 'audit', 'chain');
      expect(attempts.filter((a) => !a.ok)).toEqual([]);
      const chain = await store.listAudit();
      expect(chain.map((e) => e.seq)).toEqual(Array.from({ length: ATTEMPTS }, (_, i) => i + 1));
      expect(new Set(chain.map((e) => e.actor)).size).toBe(ATTEMPTS);
      chain.forEach((e, i) => expect(e.prev).toBe(i === 0 ? 'genesis' : chain[i - 1]?.mac));
    } finally {
      await store.close();
    }
  });
});
