import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';

/*
 * vitest globalSetup: one real PostgreSQL server for the whole run, started
 * by `npm test` itself (no manual step, nothing left on the machine). Test
 * files get its admin URL through `inject('postgresAdminUrl')` and make
 * their own databases (test/helpers/postgres.ts). The server runs under a
 * process of its own (postgres-process.ts says why), whose stdin this
 * process holds: closing it stops the server, and so does this process
 * dying.
 */
declare module 'vitest' {
  export interface ProvidedContext {
    postgresAdminUrl: string;
  }
}

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), 'postgres-process.ts');

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const child = spawn(process.execPath, ['--import', 'tsx', SCRIPT], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const first = await new Promise<string | undefined>((resolve, reject) => {
    child.once('error', reject);
    void exited.then(() => resolve(undefined));
    createInterface({ input: child.stdout }).once('line', resolve);
  });
  if (first === undefined) throw new Error(`the tests' PostgreSQL process exited with ${await exited} before its server ran (its error is above)`);
  const { adminUrl } = JSON.parse(first) as { adminUrl: string };
  project.provide('postgresAdminUrl', adminUrl);
  return async () => {
    child.stdin.end();
    const code = await exited;
    if (code !== 0) throw new Error(`the tests' PostgreSQL process exited with ${code} while stopping`);
  };
}
