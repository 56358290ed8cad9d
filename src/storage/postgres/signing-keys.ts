import type { SigningKeyRow } from '../rows.ts';
import type { SigningKeysRepository } from '../storage.ts';
import { one, sql, type Exec } from './exec.ts';

const COLUMNS = 'k.kid, k.x, k.sealed_seed, k.source, k.created_at, k.retired_at, k.revoked_at';

const S = {
  version: sql('signing_keys_version', 'SELECT version FROM signing_key_ring WHERE id = 1'),
  // One statement, one snapshot: the version and the keys it names.
  read: sql('signing_keys_read', `SELECT r.version, r.kek_check, ${COLUMNS}
    FROM signing_key_ring r LEFT JOIN signing_keys k ON true WHERE r.id = 1 ORDER BY k.position`),
  create: sql('signing_keys_create', `INSERT INTO signing_key_ring (id, version, kek_check, updated_at) VALUES (1, 1, $1, $2)
    ON CONFLICT (id) DO NOTHING`),
  bump: sql('signing_keys_bump', `UPDATE signing_key_ring SET version = version + 1, kek_check = $2, updated_at = $3
    WHERE id = 1 AND version = $1 RETURNING version`),
  clear: sql('signing_keys_clear', 'DELETE FROM signing_keys'),
  insert: sql('signing_keys_insert', `INSERT INTO signing_keys (kid, position, x, sealed_seed, source, created_at, retired_at, revoked_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`),
};

type ReadRow = { version: number; kek_check: string } & { [K in keyof SigningKeyRow]: SigningKeyRow[K] | null };

/**
 * The ring in PostgreSQL. `replace` runs in a short transaction of its own
 * (without the broker's write lock: no other transaction touches these
 * tables): the conditional bump of the ring row takes its row lock, so a
 * second writer waits, then finds the version moved and writes nothing.
 */
export function pgSigningKeys(x: Exec): SigningKeysRepository {
  return {
    async version() {
      return (await one<{ version: number }>(x.read(S.version)))?.version ?? 0;
    },
    async read() {
      const rows = (await x.read<ReadRow>(S.read)).rows;
      if (rows.length === 0) return { version: 0, kek_check: null, keys: [] };
      return {
        version: rows[0]!.version,
        kek_check: rows[0]!.kek_check,
        keys: rows
          .filter((r) => r.kid !== null)
          .map((r) => ({ kid: r.kid!, x: r.x!, sealed_seed: r.sealed_seed, source: r.source!, created_at: r.created_at!, retired_at: r.retired_at, revoked_at: r.revoked_at })),
      };
    },
    replace(expected, ring, now) {
      return x.lease(async (q) => {
        let version: number | undefined;
        if (expected === 0) {
          version = (await q(S.create, [ring.kek_check, now])).rowCount === 1 ? 1 : undefined;
        } else {
          version = (await q<{ version: number }>(S.bump, [expected, ring.kek_check, now])).rows[0]?.version;
        }
        if (version === undefined) return undefined;
        await q(S.clear);
        let position = 0;
        for (const k of ring.keys) {
          await q(S.insert, [k.kid, position++, k.x, k.sealed_seed, k.source, k.created_at, k.retired_at, k.revoked_at]);
        }
        return version;
      });
    },
  };
}
