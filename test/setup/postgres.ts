import type { TestProject } from 'vitest/node';
import { startPostgres } from '../helpers/postgres-server.ts';

/*
 * vitest globalSetup: one real PostgreSQL server for the whole run, started
 * by `npm test` itself (no manual step, nothing left on the machine). Test
 * files get its admin URL through `inject('postgresAdminUrl')` and make
 * their own databases (test/helpers/postgres.ts).
 */
declare module 'vitest' {
  export interface ProvidedContext {
    postgresAdminUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startPostgres();
  project.provide('postgresAdminUrl', server.adminUrl);
  return () => server.stop();
}
