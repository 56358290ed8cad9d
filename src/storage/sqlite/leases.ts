import type { LeaseRow } from '../rows.ts';
import type { LeasesRepository } from '../storage.ts';
import type { Db } from './open.ts';
import type { Sync } from './sync.ts';

export function sqliteLeases(db: Db): Sync<LeasesRepository> {
  // One conditional upsert: inserted when free, updated only when ours or expired (else no change).
  const acquire = db.prepare(`INSERT INTO leases (name, holder, expires_at, acquired_at) VALUES (@name, @holder, @expires_at, @now)
    ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,
      acquired_at = CASE WHEN leases.holder = excluded.holder THEN leases.acquired_at ELSE excluded.acquired_at END
    WHERE leases.holder = excluded.holder OR leases.expires_at <= @now`);
  const release = db.prepare('DELETE FROM leases WHERE name = ? AND holder = ?');
  const get = db.prepare('SELECT name, holder, expires_at, acquired_at FROM leases WHERE name = ?');
  return {
    acquire: (name, holder, now, expiresAt) => acquire.run({ name, holder, now, expires_at: expiresAt }).changes === 1,
    release: (name, holder) => release.run(name, holder).changes === 1,
    get: (name) => get.get(name) as LeaseRow | undefined,
  };
}
