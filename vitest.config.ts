import { configDefaults, defineConfig } from 'vitest/config';

/** A door's protocol suites. */
const suitesOf = (door: string): string[] => [`test/protocols/${door}*.test.ts`, `test/protocols/contract-${door}.test.ts`, `test/protocols/jit-${door}.test.ts`];
/** The suites of the doors that can run in data-path workers (src/dataplane), run a second time with the door in two. */
const DATA_PATH_SUITES = ['postgres', 'mysql'].flatMap(suitesOf);
/** The suite of the native data path's lean record layer: it sets its door's options itself. */
const LEAN_RECORDS = 'test/protocols/postgres-native-records.test.ts';
/** The default excludes, and the tests of the native data path in the test process itself (its addon's endpoints). */
const WITHOUT_NATIVE_ONLY = [...configDefaults.exclude, 'test/protocols/postgres-native.test.ts', LEAN_RECORDS];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: 'forks',
    // Protocol tests start real servers; two cores do not like a crowd.
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        test: {
          name: 'gatehouse',
          include: ['test/**/*.test.ts', 'src/**/*.test.ts', 'protocols/**/*.test.ts'],
          // Installs the servers and browser the tests use, once and before any test starts (vitest
          // sets up every project before running one): parallel on-demand installs from the target
          // scripts collide on dpkg's lock. Here only, so that it runs once.
          globalSetup: ['test/global-setup.ts'],
        },
      },
      { extends: true, test: { name: 'data-path workers', include: DATA_PATH_SUITES, exclude: WITHOUT_NATIVE_ONLY, env: { GATEHOUSE_TEST_DATA_PATH: 'workers' } } },
      // The PostgreSQL door's sessions run on its native data path where the addon loads (the two
      // projects above); the same suites again on the JavaScript relay it falls back to.
      {
        extends: true,
        test: { name: 'postgres node relay', include: suitesOf('postgres'), exclude: WITHOUT_NATIVE_ONLY, env: { GATEHOUSE_POSTGRES_RELAY: 'node' } },
      },
      // The MySQL door's sessions with client TLS run on the native data path too; the same
      // suites again on its relay on Node's streams.
      {
        extends: true,
        test: { name: 'mysql node relay', include: suitesOf('mysql'), exclude: WITHOUT_NATIVE_ONLY, env: { GATEHOUSE_MYSQL_RELAY: 'node' } },
      },
      // On the native data path a live session's TLS records leave OpenSSL for the addon's lean
      // record layer (the projects above); the same suites, the native one with them, with
      // OpenSSL keeping them, as it does for a TLS 1.2 session.
      {
        extends: true,
        test: { name: 'postgres openssl records', include: suitesOf('postgres'), exclude: [...configDefaults.exclude, LEAN_RECORDS], env: { GATEHOUSE_POSTGRES_TLS_RECORDS: 'openssl' } },
      },
      { extends: true, test: { name: 'mysql openssl records', include: suitesOf('mysql'), env: { GATEHOUSE_MYSQL_TLS_RECORDS: 'openssl' } } },
    ],
  },
});
