import { defineConfig } from 'vitest/config';

/** The suites of the doors that can run in data-path workers (src/dataplane), run a second time with the door in two. */
const DATA_PATH_SUITES = ['postgres', 'mysql'].flatMap((door) => [`test/protocols/${door}*.test.ts`, `test/protocols/contract-${door}.test.ts`, `test/protocols/jit-${door}.test.ts`]);

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
      { extends: true, test: { name: 'data-path workers', include: DATA_PATH_SUITES, env: { GATEHOUSE_TEST_DATA_PATH: 'workers' } } },
    ],
  },
});
