// One racer for concurrent-checkout.test.ts: opens its own SqliteStore connection (the real
// class, transpiled by the test), waits at the shared barrier, then runs its share of the
// race: check-outs of one resource, or audit appends to the one chain.
import { createHash } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';

const { storeUrl, path, task, resource, names, barrier } = workerData;
const { SqliteStore } = await import(storeUrl);
const store = SqliteStore.open(path);
const gate = new Int32Array(barrier);

parentPort.postMessage({ type: 'ready' });
// Blocks this thread until the test flips the gate for every worker at once.
Atomics.wait(gate, 0, 0);

const seal = (entry) => createHash('sha256').update(JSON.stringify(entry)).digest('hex');
const attempt = {
  checkout: (name) =>
    store.insertLease({
      id: `lease-${name}`,
      resource,
      holder: name,
      state: 'held',
      startedAt: new Date(0),
      expiresAt: new Date(3_600_000),
    }),
  audit: (name) => store.appendAudit({ at: new Date(0), actor: name, action: 'race', subject: resource, data: {} }, seal),
}[task];

const results = [];
for (const name of names) {
  try {
    await attempt(name);
    results.push({ name, ok: true });
  } catch (e) {
    results.push({ name, ok: false, code: e?.code, details: e?.details, message: String(e?.message) });
  }
}
await store.close();
parentPort.postMessage({ type: 'done', results });
