import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts', 'protocols/**/*.test.ts'],
    // Installs the servers and browser the tests use, once and before any worker starts:
    // parallel on-demand installs from the target scripts collide on dpkg's lock.
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: 'forks',
    // Protocol tests start real servers; two cores do not like a crowd.
    maxWorkers: 2,
  },
});
