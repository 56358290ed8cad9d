-- The signing key ring shared by every broker on the database
-- (src/keys/key-ring-db.ts; docs/architecture.md, "Signing keys"). With
-- SQLite the ring stays in signing-keys.json next to the database.
-- One ring row carries the version every broker polls (about once a
-- second) and the compare-and-set of every write: a writer bumps it from
-- the version it read, or writes nothing and tries again.
CREATE TABLE signing_key_ring (
  id          SMALLINT PRIMARY KEY CHECK (id = 1),
  version     BIGINT NOT NULL CHECK (version > 0),
  -- A constant sealed under the key-encryption key: a broker started with
  -- another KEK refuses to start instead of sealing keys nobody else opens.
  kek_check   TEXT NOT NULL,
  updated_at  BIGINT NOT NULL
);

-- The keys, rewritten as a whole with each version of the ring.
-- sealed_seed: AES-256-GCM of the private key seed under the key-encryption
-- key, with the kid as associated data; only on the current generated key
-- (erased at retirement). Never the seed in the clear.
CREATE TABLE signing_keys (
  kid          TEXT COLLATE "C" PRIMARY KEY,
  position     INTEGER NOT NULL,
  x            TEXT NOT NULL,
  sealed_seed  TEXT,
  source       TEXT NOT NULL CHECK (source IN ('generated', 'env')),
  created_at   BIGINT NOT NULL,
  retired_at   BIGINT,
  revoked_at   BIGINT,
  CHECK (sealed_seed IS NULL OR (source = 'generated' AND retired_at IS NULL))
);
