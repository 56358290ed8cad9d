import type { LeaseRow } from '../rows.ts';
import type { LeasesRepository } from '../storage.ts';
import { changedOne, one, sql, type Exec } from './exec.ts';

const S = {
  // One conditional upsert: inserted when free, updated only when ours or expired. ON CONFLICT locks the
  // existing row and evaluates the WHERE on its newest version, so racing callers cannot both take it.
  acquire: sql('leases_acquire', `INSERT INTO leases (name, holder, expires_at, acquired_at) VALUES ($1, $2, $4, $3)
    ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,
      acquired_at = CASE WHEN leases.holder = excluded.holder THEN leases.acquired_at ELSE excluded.acquired_at END
    WHERE leases.holder = excluded.holder OR leases.expires_at <= $3`),
  release: sql('leases_release', 'DELETE FROM leases WHERE name = $1 AND holder = $2'),
  get: sql('leases_get', 'SELECT name, holder, expires_at, acquired_at FROM leases WHERE name = $1'),
};

/**
 * Outside a transaction a lease write is one atomic statement on the pool,
 * without the broker's write lock (`unlocked`, as the outbox's
 * owner-conditional marks): a renewal never queues behind other writes.
 */
export function pgLeases(x: Exec): LeasesRepository {
  return {
    acquire: (name, holder, now, expiresAt) => changedOne(x.unlocked(S.acquire, [name, holder, now, expiresAt])),
    release: (name, holder) => changedOne(x.unlocked(S.release, [name, holder])),
    get: (name) => one<LeaseRow>(x.read(S.get, [name])),
  };
}
