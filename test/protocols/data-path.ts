/**
 * The data path the protocol suites run against: the door in the test's own process, or, with
 * `GATEHOUSE_TEST_DATA_PATH=workers` (the `data-path workers` project in vitest.config.ts), the
 * same door served by two data-path worker processes (src/dataplane). The tests are the same.
 */
import type { ProtocolAdapter } from '../../src/broker/adapter.js';
import { silentLogger } from '../../src/core/log.js';
import { DataPath } from '../../src/dataplane/pool.js';

export const DATA_PATH = process.env.GATEHOUSE_TEST_DATA_PATH === 'workers' ? 'workers' : 'in-process';

let pool: Promise<DataPath> | undefined;

/**
 * `local` as the suite should use it: itself, or served by the workers with the options it was
 * made with (its `stats` are then the workers' counters, summed). One pool per test file; its
 * workers end with the file's process.
 */
export async function served<T extends ProtocolAdapter & { stats: object }>(door: string, local: T): Promise<T> {
  if (DATA_PATH === 'in-process') return local;
  pool ??= (async () => {
    const p = new DataPath(2, silentLogger);
    await p.start();
    return p;
  })();
  return (await pool).door(door, local) as unknown as T;
}
