import { dirname, join } from 'node:path';
import { ConfigError, type Config } from '../config/config.ts';
import { systemClock, type Clock } from '../lib/clock.ts';
import { currentEntry, ms, revoked, rotated, settleAtLoad, type LoadNote, type RevokeResult } from './key-entries.ts';
import { KEY_FILE_NAME, KeyRingError, openKeyFile, validate, type KeyEntry, type KeyFile, type KeyRingLog } from './key-file.ts';
import { DEFAULT_KEY_GRACE_SECONDS, createKeyRing, jwksOf, listOf, parseSigningKey, signerOf, type KeyRing, type RotateResult, type Signer } from './key-ring.ts';
import { UnsealError, kekBytes, open, seal, sealCheck, verifyCheck } from './key-seal.ts';

/** A broker checks the ring's version in the database this often, so a rotation or revocation made elsewhere is in force within about it. */
export const DB_RING_RECHECK_MS = 1_000;

/** Writers that lose the compare-and-set re-read and try again this many times. */
const WRITE_ATTEMPTS = 20;

/** What a broker logs about the ring (the pino logger satisfies it). */
export interface DbKeyRingLog extends KeyRingLog {
  error?(obj: object, msg: string): void;
}

export interface DatabaseKeyRing extends KeyRing {
  rotate(): Promise<RotateResult>;
  revoke(kid: string): Promise<RevokeResult>;
  /** Checks the version now and re-reads the ring if it moved (what the timer does every {@link DB_RING_RECHECK_MS}). */
  refresh(): Promise<void>;
}

/**
 * Where the ring is stored: the storage's `signingKeys` repository
 * (src/storage/storage.ts, SigningKeysRepository, matches it; restated here
 * because src/keys imports no storage module: docs/architecture.md).
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
  x: string;
  sealed_seed: string | null;
  source: 'generated' | 'env';
  created_at: number;
  retired_at: number | null;
  revoked_at: number | null;
}

export interface StoredKeyRing {
  version: number;
  kek_check: string | null;
  keys: StoredKey[];
}

const iso = (t: number) => new Date(t).toISOString();

/** The stored rows of a ring: each seed sealed under the KEK, bound to its kid. */
function toRows(f: KeyFile, kek: Buffer): StoredKey[] {
  return f.keys.map((k) => ({
    kid: k.kid,
    x: k.x,
    sealed_seed: k.d === undefined ? null : seal(kek, { kind: 'signing-key', kid: k.kid }, Buffer.from(k.d, 'base64url')),
    source: k.source,
    created_at: ms(k.created_at),
    retired_at: k.retired_at === undefined ? null : ms(k.retired_at),
    revoked_at: k.revoked_at === undefined ? null : ms(k.revoked_at),
  }));
}

/**
 * The ring of stored rows, seeds opened with `kek` (none opened without one:
 * public halves only).
 *
 * @throws UnsealError when `kek` is not the key that sealed the ring.
 */
function fromRows(ring: StoredKeyRing, kek: Buffer | undefined): KeyFile {
  if (kek && ring.kek_check !== null) verifyCheck(kek, ring.kek_check);
  const keys: KeyEntry[] = ring.keys.map((r) => ({
    kid: r.kid,
    x: r.x,
    ...(kek && r.sealed_seed !== null ? { d: open(kek, { kind: 'signing-key', kid: r.kid }, r.sealed_seed).toString('base64url') } : {}),
    source: r.source,
    created_at: iso(r.created_at),
    ...(r.retired_at === null ? {} : { retired_at: iso(r.retired_at) }),
    ...(r.revoked_at === null ? {} : { revoked_at: iso(r.revoked_at) }),
  }));
  const f: KeyFile = { version: 1, keys };
  if (kek) validate(f, 'signing key ring in the database');
  return f;
}

/**
 * The signing key ring kept in PostgreSQL (JIT_DATABASE_URL), shared by
 * every broker on the database. Same entries and the same rules as the
 * key file (./key-entries.ts does rotation, pruning, revocation and the
 * settling against JIT_SIGNING_KEY for both); what differs is the store:
 *
 * - Seeds are sealed (AES-256-GCM, ./key-seal.ts) under the key-encryption
 *   key; the database, its dumps and its replicas never hold one in the
 *   clear. A KEK check value stored with the ring makes a broker with the
 *   wrong KEK refuse to start (ConfigError: one line, exit 2).
 * - Every write is a compare-and-set on the ring's version: read, apply
 *   the change, replace if the version did not move, otherwise read again
 *   and re-apply. Two brokers rotating at once make two rotations; no key
 *   is lost.
 * - Each broker checks the version about once a second (one row read) and
 *   re-reads the ring when it moved, so `jit keys rotate`/`revoke` on any
 *   node or by the CLI are in force on all within about a second; all
 *   serve the same JWKS. The check never writes: only start, `rotate` and
 *   `revoke` write (so brokers configured differently cannot take turns
 *   rewriting the ring). A failed check (database away) keeps the ring in
 *   memory and tries again.
 * - `current()`, `jwks()`, `list()` and `isRevoked()` answer from memory,
 *   synchronously (they run inside request paths and transactions).
 */
export async function openDatabaseKeyRing(deps: {
  keys: KeyRingStore;
  config: Pick<Config, 'signingKey' | 'keyEncryptionKey' | 'previousKeyEncryptionKey'>;
  clock?: Clock;
  log?: DbKeyRingLog;
  graceSeconds?: number;
  recheckMs?: number;
  /** As the key file ring: never writes at open, never generates; `rotate()` refused, `revoke()` writes exactly the revocation. */
  readOnly?: boolean;
  /** Public halves only, no KEK needed (`jit keys list`, `jit audit verify`): never writes, `current()` throws. */
  publicOnly?: boolean;
  /** No re-read timer (the CLI: it runs one command and ends). */
  noTimer?: boolean;
}): Promise<DatabaseKeyRing> {
  const { keys: store } = deps;
  const clock = deps.clock ?? systemClock;
  const graceMs = (deps.graceSeconds ?? DEFAULT_KEY_GRACE_SECONDS) * 1000;
  const envSeed = deps.config.signingKey ? parseSigningKey(deps.config.signingKey) : undefined;
  const publicOnly = deps.publicOnly === true;
  const readOnly = deps.readOnly === true || publicOnly;
  if (!publicOnly) requireKeyEncryptionKey({ databaseUrl: 'set', keyEncryptionKey: deps.config.keyEncryptionKey });
  const kek = publicOnly || !deps.config.keyEncryptionKey ? undefined : kekBytes(deps.config.keyEncryptionKey);

  let file: KeyFile = { version: 1, keys: [] };
  let version = 0;
  let signer: Signer | undefined;
  let failing = false;

  function apply(f: KeyFile, v: number): void {
    file = f;
    version = v;
    signer = undefined;
  }

  function logLoadNote(note: LoadNote | undefined): void {
    if (note?.kind === 'env_key_changed') {
      deps.log?.info({ kid: note.kid, retired: note.retired }, 'JIT_SIGNING_KEY is a new signing key; the previous key stays published for the grace period');
    } else if (note?.kind === 'generated') {
      deps.log?.info({ kid: note.kid, location: 'database' }, note.envUnset ? 'JIT_SIGNING_KEY is no longer set; generated a new signing key' : 'generated a new signing key');
    }
  }

  /** Requires the KEK to seal what is written. */
  function sealingKey(): Buffer {
    if (!kek) throw new KeyRingError('the key ring was opened without the key-encryption key (JIT_KEY_ENCRYPTION_KEY): it cannot be changed');
    return kek;
  }

  /**
   * Reads the ring, applies `change` and writes it if the version did not
   * move meanwhile; otherwise reads again. `change` answering no file: nothing to write.
   */
  async function update<T>(change: (f: KeyFile, now: number) => { file: KeyFile | undefined; value: T }): Promise<T> {
    for (let attempt = 0; attempt < WRITE_ATTEMPTS; attempt++) {
      const ring = await store.read();
      const current = fromRows(ring, kek);
      const now = clock.now();
      const { file: next, value } = change(current, now);
      if (!next) {
        apply(current, ring.version);
        return value;
      }
      const key = sealingKey();
      const written = await store.replace(ring.version, { kek_check: ring.kek_check ?? sealCheck(key), keys: toRows(next, key) }, now);
      if (written !== undefined) {
        apply(next, written);
        return value;
      }
    }
    throw new KeyRingError(`the signing key ring in the database kept changing during ${WRITE_ATTEMPTS} attempts to write it; try again`);
  }

  /**
   * Replacing the KEK (JIT_KEY_ENCRYPTION_KEY_PREVIOUS set): a ring still
   * sealed under the previous KEK is opened with it and written back sealed
   * under the new one (compare-and-set, like every write). Done once, by the
   * first broker started with both; a no-op on a ring already re-sealed.
   */
  async function resealUnderNewKek(): Promise<void> {
    if (!kek || !deps.config.previousKeyEncryptionKey || readOnly) return;
    const previous = kekBytes(deps.config.previousKeyEncryptionKey);
    for (let attempt = 0; attempt < WRITE_ATTEMPTS; attempt++) {
      const ring = await store.read();
      if (ring.kek_check === null) return;
      try {
        verifyCheck(kek, ring.kek_check);
        return; // already under the new KEK
      } catch (err) {
        if (!(err instanceof UnsealError)) throw err;
      }
      const f = fromRows(ring, previous); // UnsealError when neither KEK opens it
      if ((await store.replace(ring.version, { kek_check: sealCheck(kek), keys: toRows(f, kek) }, clock.now())) !== undefined) {
        deps.log?.info({}, 'signing keys in the database re-sealed under the new key-encryption key; JIT_KEY_ENCRYPTION_KEY_PREVIOUS can be removed once every broker runs with the new key');
        return;
      }
    }
    throw new KeyRingError(`the signing key ring in the database kept changing during ${WRITE_ATTEMPTS} attempts to re-seal it; try again`);
  }

  /** At open: the ring settled against JIT_SIGNING_KEY (a key generated when there is none), written back unless read-only. */
  async function load(): Promise<void> {
    await resealUnderNewKek();
    let note: LoadNote | undefined;
    await update((f, now) => {
      const settled = settleAtLoad(f, { envSeed, readOnly, now, graceMs });
      note = settled.note;
      return { file: settled.changed && !readOnly ? settled.file : undefined, value: undefined };
    });
    // Read-only, or nothing to write: the settled view in memory (idempotent on a ring just written).
    apply(settleAtLoad(file, { envSeed, readOnly: true, now: clock.now(), graceMs }).file, version);
    logLoadNote(note);
  }

  /** The version moved: the ring as another broker (or the CLI) wrote it, settled in memory only. */
  async function reread(): Promise<void> {
    const ring = await store.read();
    if (ring.version < version) return; // a write of this broker's landed meanwhile: it is newer
    const settled = settleAtLoad(fromRows(ring, kek), { envSeed, readOnly: true, now: clock.now(), graceMs });
    const before = currentEntry(file)?.kid;
    apply(settled.file, ring.version);
    const after = currentEntry(file)?.kid;
    if (after !== before) deps.log?.info({ kid: after ?? '-', previous: before ?? '-' }, 'signing key ring changed in the database; now signing with the new current key');
  }

  let checking: Promise<void> | undefined;
  function refresh(): Promise<void> {
    checking ??= (async () => {
      try {
        if ((await store.version()) !== version) await reread();
        if (failing) deps.log?.info({}, 'signing key ring readable again');
        failing = false;
      } catch (err) {
        // The database away, or a ring this broker cannot open: keep the ring in memory and look again.
        if (!failing) (deps.log?.error ?? deps.log?.warn)?.call(deps.log, { err: (err as Error).message }, 'cannot re-read the signing key ring from the database; signing with the ring as last read');
        failing = true;
      } finally {
        checking = undefined;
      }
    })();
    return checking;
  }

  await load();

  let timer: NodeJS.Timeout | undefined;
  if (!deps.noTimer) {
    timer = setInterval(() => void refresh(), deps.recheckMs ?? DB_RING_RECHECK_MS);
    timer.unref();
  }

  return {
    location: 'database',
    refresh,
    current(): Signer {
      if (signer) return signer;
      const entry = currentEntry(file);
      if (!entry) throw new KeyRingError('no signing key yet: one is generated when the service first starts');
      if (entry.source === 'generated' && entry.d === undefined) throw new KeyRingError('the signing key ring was opened without its key-encryption key: it cannot sign');
      signer = signerOf(entry, envSeed);
      return signer;
    },
    jwks: () => jwksOf(file, clock.now(), graceMs),
    list: () => listOf(file, clock.now(), graceMs),
    isRevoked: (kid: string) => file.keys.some((k) => k.kid === kid && k.revoked_at !== undefined),
    async rotate(): Promise<RotateResult> {
      if (readOnly) throw new KeyRingError('key ring opened read-only');
      if (envSeed) {
        throw new KeyRingError('the signing key comes from JIT_SIGNING_KEY; to rotate, set JIT_SIGNING_KEY to a new key on every broker and restart them (the old key stays published for the grace period)');
      }
      const r = await update((f, now) => {
        const next = rotated(f, now, graceMs);
        return { file: next.file, value: { kid: next.kid, retiredKid: next.retiredKid } };
      });
      deps.log?.info({ kid: r.kid, retired: r.retiredKid }, 'signing key rotated');
      return r;
    },
    async revoke(kid: string): Promise<RevokeResult> {
      if (publicOnly) throw new KeyRingError('key ring opened with public keys only');
      const result = await update((f, now) => {
        const r = revoked(f, kid, now, graceMs, 'the signing key ring in the database');
        return { file: r.file, value: r.result };
      });
      if (!result.alreadyRevoked) deps.log?.info({ kid, ...(result.rotated ? { current: result.current } : {}) }, 'signing key revoked');
      return result;
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
    },
  };
}

/**
 * With JIT_DATABASE_URL the signing keys live in the database, sealed: a
 * process that signs or changes them needs the key-encryption key.
 *
 * @throws ConfigError naming JIT_KEY_ENCRYPTION_KEY when it is not set.
 */
export function requireKeyEncryptionKey(config: Pick<Config, 'databaseUrl' | 'keyEncryptionKey'>): void {
  if (config.databaseUrl && !config.keyEncryptionKey) {
    throw new ConfigError('JIT_KEY_ENCRYPTION_KEY', 'required with JIT_DATABASE_URL: the signing keys are kept in the database sealed under it (or set JIT_KEY_ENCRYPTION_KEY_FILE; make one with `openssl rand -base64 32`, the same on every broker)');
  }
}

/**
 * The key ring for this configuration: in the database when the storage
 * keeps one (PostgreSQL, JIT_DATABASE_URL), else the key file next to the
 * SQLite database (./key-ring.ts).
 *
 * @throws ConfigError naming JIT_KEY_ENCRYPTION_KEY when it is missing (and
 *   needed) or does not open the ring stored in the database.
 */
export async function openKeyRing(deps: {
  config: Pick<Config, 'dbPath' | 'signingKey' | 'keyEncryptionKey' | 'previousKeyEncryptionKey'>;
  /** The storage's `signingKeys` (undefined with SQLite: the key file). */
  store: KeyRingStore | undefined;
  clock?: Clock;
  log?: DbKeyRingLog;
  readOnly?: boolean;
  publicOnly?: boolean;
  noTimer?: boolean;
}): Promise<KeyRing> {
  const { store } = deps;
  if (!store) {
    return createKeyRing({ config: deps.config, ...(deps.clock ? { clock: deps.clock } : {}), ...(deps.log ? { log: deps.log } : {}), readOnly: deps.readOnly === true || deps.publicOnly === true });
  }
  try {
    return await openDatabaseKeyRing({ ...deps, keys: store });
  } catch (err) {
    if (err instanceof UnsealError) {
      throw new ConfigError('JIT_KEY_ENCRYPTION_KEY', `does not open the signing keys stored in the database (${err.message}): set the key-encryption key the other brokers use`);
    }
    throw err;
  }
}

/**
 * Seals the entries of a key file (`signing-keys.json`) into the database's
 * empty ring, for moving an install from SQLite to PostgreSQL (`jit db
 * copy`). Refuses a database that already holds a ring. Answers how many
 * keys were copied.
 *
 * @throws KeyRingError when the database already holds a ring.
 */
export async function sealKeyFileInto(store: KeyRingStore, f: KeyFile, keyEncryptionKey: string, now: number): Promise<number> {
  validate(f, 'signing key file');
  const kek = kekBytes(keyEncryptionKey);
  const written = await store.replace(0, { kek_check: sealCheck(kek), keys: toRows(f, kek) }, now);
  if (written === undefined) throw new KeyRingError('the database already holds a signing key ring; it is not replaced');
  return f.keys.length;
}

/**
 * `jit db copy`'s step for the keys: the key file of an SQLite install
 * (`signing-keys.json` next to `dbPath`, or `keyFile`) sealed into the
 * empty ring of the target database. Answers how many keys were copied: 0
 * when there is no key file (the first broker on the target generates one).
 *
 * @throws KeyRingError for an unreadable or invalid key file, or a target that already holds a ring.
 */
export async function copyKeyFileToDatabase(opts: { dbPath: string; keyFile?: string; store: KeyRingStore; keyEncryptionKey: string; now: number }): Promise<number> {
  const path = opts.keyFile ?? join(dirname(opts.dbPath), KEY_FILE_NAME);
  const f = openKeyFile({ path, clock: systemClock, optional: false }).read();
  if (!f) return 0;
  return sealKeyFileInto(opts.store, f, opts.keyEncryptionKey, opts.now);
}
