import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';

/**
 * A new, empty database on the run's PostgreSQL server (test/setup/postgres.ts),
 * named after this process so parallel test files never share one. Answers
 * its connection URL.
 */
export async function freshPostgresDatabase(prefix = 'jit'): Promise<string> {
  const admin = new URL(inject('postgresAdminUrl'));
  const name = `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`.toLowerCase();
  const client = new pg.Client({ connectionString: admin.href });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  admin.pathname = `/${name}`;
  return admin.href;
}
