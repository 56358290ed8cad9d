import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';

/** Runs one statement on its own connection to `url` (DDL a test needs before the engine opens). */
async function runOnce(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/**
 * A new, empty database on the run's PostgreSQL server (test/setup/postgres.ts),
 * named after this process so parallel test files never share one. Answers
 * its connection URL.
 */
export async function freshPostgresDatabase(prefix = 'jit'): Promise<string> {
  const admin = new URL(inject('postgresAdminUrl'));
  const name = `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`.toLowerCase();
  await runOnce(admin.href, `CREATE DATABASE ${name}`);
  admin.pathname = `/${name}`;
  return admin.href;
}

/**
 * Empty schemas of one database of the calling file: each call of the
 * answered function creates schema `<schemaPrefix><n>` and answers a URL
 * whose `search_path` (in `options`) starts there, so the engine creates its
 * tables in it, as an operator's `?options=-c search_path=jit` would have
 * it. The database is created on the first call: CREATE DATABASE costs
 * about a second on a busy machine, a schema nothing.
 */
export function postgresSchemas(databasePrefix = 'jit', schemaPrefix = 's'): () => Promise<string> {
  let database: Promise<string> | undefined;
  let schemas = 0;
  return async () => {
    const url = new URL(await (database ??= freshPostgresDatabase(databasePrefix)));
    const name = `${schemaPrefix}${++schemas}`;
    await runOnce(url.href, `CREATE SCHEMA ${name}`);
    url.searchParams.set('options', `-c search_path=${name}`);
    return url.href;
  };
}
