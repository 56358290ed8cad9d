/*
 * The database ring's stored shape and the store it needs (key-ring-db.ts).
 * Types only and no imports, so src/storage can name them for its rows
 * (SigningKeyRow, SigningKeyRingRow) without depending on the ring itself.
 */

/**
 * Where the ring is stored: the storage's `signingKeys` repository
 * (src/storage/storage.ts, SigningKeysRepository, whose rows are these
 * types: src/storage/rows.ts imports them from here, as src/keys imports no
 * storage module: docs/architecture.md).
 */
export interface KeyRingStore {
  /** The ring's version, 0 before the first write. */
  version(): Promise<number>;
  read(): Promise<StoredKeyRing>;
  /** Replaces the ring if its version is still `expected`; the new version, or undefined when it moved. */
  replace(expected: number, ring: { kek_check: string; keys: StoredKey[] }, now: number): Promise<number | undefined>;
}

/** A stored key: the seed only sealed (`sealed_seed`), times in epoch ms. */
export interface StoredKey {
  kid: string;
  /** The public key, base64url. */
  x: string;
  sealed_seed: string | null;
  source: 'generated' | 'env';
  created_at: number;
  retired_at: number | null;
  revoked_at: number | null;
}

/** The ring as of one version; version 0 (no keys, no check) before the first write. */
export interface StoredKeyRing {
  version: number;
  /** A constant sealed under the key-encryption key, so a wrong one is found even with no seed stored. */
  kek_check: string | null;
  /** In ring order (the current key first after a rotation). */
  keys: StoredKey[];
}
