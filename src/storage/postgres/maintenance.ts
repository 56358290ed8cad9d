import type pg from 'pg';
import type { Logger } from '../../lib/logger.ts';
import type { StorageMaintenance } from '../storage.ts';

/** Hosts that never leave the machine: a plain connection to them crosses no network. */
function isLocal(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  return h === '' || h.startsWith('/') || h === 'localhost' || h === '::1' || /^127\./.test(h);
}

/**
 * Whether a connection to `url` would cross a network in the clear: a host
 * other than loopback (or a Unix socket) and no `sslmode` in the URL (pg
 * then connects without TLS). The URL is parsed here and never logged.
 */
export function plaintextOverNetwork(url: string): boolean {
  const u = new URL(url);
  const host = u.searchParams.get('host') ?? decodeURIComponent(u.hostname);
  return !isLocal(host) && !u.searchParams.has('sslmode') && !u.searchParams.has('ssl');
}

/**
 * The PostgreSQL engine's upkeep in the service. The server does its own
 * (autovacuum, checkpoints), so there is nothing to run: it logs the
 * server's version and warns when the connection crosses a network without
 * TLS (docs/operations.md).
 */
export function startPostgresMaintenance(pool: pg.Pool, url: string, log: Logger): StorageMaintenance {
  if (plaintextOverNetwork(url)) {
    log.warn('JIT_DATABASE_URL names a host beyond this machine without sslmode: the database traffic (token hashes, the audit log) crosses the network in the clear; add ?sslmode=verify-full (docs/operations.md)');
  }
  const checked = pool
    .query<{ server_version: string }>('SHOW server_version')
    .then((r) => log.info({ serverVersion: r.rows[0]?.server_version }, 'storage: PostgreSQL'))
    .catch((err: unknown) => log.warn({ err: { name: (err as Error | undefined)?.name, code: (err as { code?: unknown } | undefined)?.code } }, 'storage: could not read the PostgreSQL server version'));
  return { stop: () => checked };
}
