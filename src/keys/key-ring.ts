import * as ed from '@noble/ed25519';
import { dirname, join } from 'node:path';
import { ConfigError, type Config } from '../config/config.ts';
import { systemClock, type Clock } from '../lib/clock.ts';
import { currentEntry, ms, prune, publishedEntries, revoked, rotated, settleAtLoad, type LoadNote, type RevokeResult } from './key-entries.ts';
import { KEY_FILE_NAME, KEY_FILE_RECHECK_MS, KeyFileRace, KeyRingError, keyId, openKeyFile, type KeyEntry, type KeyFile, type KeyRingLog } from './key-file.ts';

export { KEY_FILE_NAME, KEY_FILE_RECHECK_MS, KeyRingError, keyId, type KeyRingLog } from './key-file.ts';
export type { RevokeResult } from './key-entries.ts';

/** Retired public keys stay in the JWKS this long after a rotation. */
export const DEFAULT_KEY_GRACE_SECONDS = 7 * 24 * 3600;

/** An Ed25519 public key as a JWK (RFC 8037), as served in `/.well-known/jwks.json`. */
export interface OkpJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  kid: string;
  use: 'sig';
  alg: 'EdDSA';
}

export interface Jwks {
  keys: OkpJwk[];
}

/**
 * The current signing key. `sign` is generic (raw Ed25519 over any bytes) so
 * webhook signatures and EdDSA JWTs share one key ring.
 */
export interface Signer {
  kid: string;
  alg: 'EdDSA';
  publicJwk: OkpJwk;
  sign(bytes: Uint8Array): Uint8Array;
}

export interface KeyInfo {
  kid: string;
  /** `revoked`: removed from the JWKS by `jit keys revoke`; kept (public half only) so it is never trusted or used again. */
  status: 'current' | 'previous' | 'revoked';
  /** `generated`: created by the broker and kept in the key file; `env`: from JIT_SIGNING_KEY. */
  source: 'generated' | 'env';
  createdAt: number;
  retiredAt?: number;
  /** When a previous key leaves the JWKS. */
  dropsAt?: number;
  revokedAt?: number;
}

export interface KeyRing {
  current(): Signer;
  /** Current key first, then previous keys still inside their grace period. Public parts only. */
  jwks(): Jwks;
  /**
   * Makes a new current key; the old one stays published (public part only)
   * for the grace period. Synchronous on the key file, a promise on the
   * database ring: callers await it.
   */
  rotate(): RotateResult | Promise<RotateResult>;
  list(): KeyInfo[];
  /**
   * Revokes a key at once and for good: it leaves the JWKS (so what it
   * signed stops verifying), is never current again, and its public half
   * stays in the key file marked revoked. Revoking the current key first
   * rotates to a new one in the same atomic write.
   */
  revoke(kid: string): RevokeResult | Promise<RevokeResult>;
  isRevoked(kid: string): boolean;
  /** Where keys are kept: a file path, `memory` (`:memory:` database, tests), or `database` (JIT_DATABASE_URL). */
  readonly location: string;
  /** Stops watching the store (the database ring's re-read timer); idempotent. */
  stop(): void;
}

/** The key file ring: rotation and revocation are synchronous file writes. */
export interface FileKeyRing extends KeyRing {
  rotate(): RotateResult;
  revoke(kid: string): RevokeResult;
}

export interface RotateResult {
  kid: string;
  retiredKid: string;
}

/** The JWKS of a ring's entries at `now`. */
export function jwksOf(f: KeyFile, now: number, graceMs: number): Jwks {
  return { keys: publishedEntries(f, now, graceMs).map((k) => publicJwk(Buffer.from(k.x, 'base64url'))) };
}

/** What `jit keys list` shows of a ring's entries at `now`. */
export function listOf(f: KeyFile, now: number, graceMs: number): KeyInfo[] {
  return prune(f, now, graceMs).keys.map((k) => ({
    kid: k.kid,
    status: statusOf(k),
    source: k.source,
    createdAt: ms(k.created_at),
    ...(k.retired_at ? { retiredAt: ms(k.retired_at) } : {}),
    ...(k.revoked_at ? { revokedAt: ms(k.revoked_at) } : k.retired_at ? { dropsAt: ms(k.retired_at) + graceMs } : {}),
  }));
}

/** The Signer of a ring's current entry (its seed, or JIT_SIGNING_KEY's for an `env` entry). */
export function signerOf(entry: KeyEntry, envSeed: Uint8Array | undefined): Signer {
  const key = liveKeyOf(entry, envSeed);
  return Object.freeze({ kid: key.kid, alg: 'EdDSA', publicJwk: Object.freeze(publicJwk(key.publicKey)), sign: (bytes: Uint8Array) => ed.sign(bytes, key.seed) });
}

export function publicJwk(publicKey: Uint8Array): OkpJwk {
  return { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKey).toString('base64url'), kid: keyId(publicKey), use: 'sig', alg: 'EdDSA' };
}

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/**
 * Parses JIT_SIGNING_KEY: base64 (or base64url) of a 32-byte Ed25519 seed;
 * also accepted are the 64-byte seed‖public form (its public half must
 * match), PKCS#8 DER, and a Standard Webhooks `whsk_` prefix.
 *
 * @throws ConfigError naming JIT_SIGNING_KEY; the message never contains the value.
 */
export function parseSigningKey(value: string): Uint8Array {
  const text = value.trim().replace(/^whsk_/, '');
  const bad = (why: string) => new ConfigError('JIT_SIGNING_KEY', `${why} (expected base64 of a 32-byte Ed25519 private key seed)`);
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) throw bad('not base64');
  const raw = Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (raw.length === 32) return new Uint8Array(raw);
  if (raw.length === 64) {
    const seed = new Uint8Array(raw.subarray(0, 32));
    if (!Buffer.from(ed.getPublicKey(seed)).equals(raw.subarray(32))) throw bad('64-byte key whose public half does not match its seed');
    return seed;
  }
  if (raw.length === 48 && raw.subarray(0, 16).equals(PKCS8_ED25519_PREFIX)) return new Uint8Array(raw.subarray(16));
  throw bad(`decodes to ${raw.length} bytes`);
}

interface LiveKey {
  kid: string;
  seed: Uint8Array;
  publicKey: Uint8Array;
  source: 'generated' | 'env';
}

function statusOf(k: KeyEntry): KeyInfo['status'] {
  return k.revoked_at ? 'revoked' : k.retired_at ? 'previous' : 'current';
}

/** The signing key of the current entry: its seed from the file, or JIT_SIGNING_KEY's for an `env` entry. */
function liveKeyOf(entry: KeyEntry, envSeed: Uint8Array | undefined): LiveKey {
  const seed = entry.source === 'env' ? envSeed! : new Uint8Array(Buffer.from(entry.d!, 'base64url'));
  return { kid: entry.kid, seed, publicKey: new Uint8Array(Buffer.from(entry.x, 'base64url')), source: entry.source };
}

/**
 * The broker's Ed25519 signing keys: the current signer, the JWKS, rotation,
 * revocation and the grace period. The key file itself (reading, atomic
 * writes, modes, watching for changes) is ./key-file.ts; what happens to its
 * entries (new keys, retirement, pruning, revocation, settling against
 * JIT_SIGNING_KEY at load) is ./key-entries.ts. This closure holds the state
 * and does the I/O.
 *
 * Security decisions:
 * - Private keys never go into SQLite. A generated key lives in a key file
 *   next to the database (`<dirname(JIT_DB)>/signing-keys.json`), mode 0600,
 *   written atomically (temp file + rename), so a database dump or backup
 *   never carries it; JIT_SIGNING_KEY, when set, is used instead and is
 *   never written anywhere.
 * - A retired key keeps only its public half (the seed is erased at
 *   rotation): old signatures stay verifiable during the grace period, but
 *   nothing can be signed with it any more.
 * - The file is re-read when it changes (checked at most every
 *   `recheckMs`, by the ring's clock), so `jit keys rotate` and
 *   `jit keys revoke` run beside a live service take effect within a
 *   second, without a restart.
 * - A revoked key stays in the file (public half, `revoked_at`) forever:
 *   it is what keeps it out of the JWKS and refuses it as JIT_SIGNING_KEY,
 *   so it can never come back.
 */
export function createKeyRing(deps: {
  config: Pick<Config, 'dbPath' | 'signingKey'>;
  clock?: Clock;
  log?: KeyRingLog;
  /** Overrides the key file location (default next to the database; none for `:memory:`). */
  keyFile?: string;
  graceSeconds?: number;
  /** How often the key file is checked for changes made by another process (default {@link KEY_FILE_RECHECK_MS}). */
  recheckMs?: number;
  /**
   * Opening changes nothing (`jit keys list`, `jit keys revoke`): never
   * writes the key file and never generates a key at load, so a CLI run
   * without the service's JIT_SIGNING_KEY cannot replace its key. `rotate()`
   * is refused; `revoke()` writes exactly the revocation.
   */
  readOnly?: boolean;
}): FileKeyRing {
  const clock = deps.clock ?? systemClock;
  const graceMs = (deps.graceSeconds ?? DEFAULT_KEY_GRACE_SECONDS) * 1000;
  const path = deps.keyFile ?? (deps.config.dbPath === ':memory:' ? undefined : join(dirname(deps.config.dbPath), KEY_FILE_NAME));
  const envSeed = deps.config.signingKey ? parseSigningKey(deps.config.signingKey) : undefined;
  const keyFile = path ? openKeyFile({ path, clock, log: deps.log, optional: envSeed !== undefined, recheckMs: deps.recheckMs }) : undefined;

  let file: KeyFile = { version: 1, keys: [] };
  let live: LiveKey | undefined;
  /** The Signer of `live`, made once per key. */
  let signer: Signer | undefined;

  function setLive(entry: KeyEntry | undefined): void {
    signer = undefined;
    live = entry && liveKeyOf(entry, envSeed);
  }

  /** Brings `file`/`live` in line with the file on disk and the environment, writing back what changed. */
  function load(): void {
    const existed = keyFile?.read();
    const settled = settleAtLoad(existed ?? { version: 1, keys: [] }, { envSeed, readOnly: deps.readOnly === true, now: clock.now(), graceMs });
    logLoadNote(settled.note);
    if (settled.changed && keyFile && !deps.readOnly) {
      try {
        keyFile.write(settled.file, existed === undefined);
      } catch (err) {
        if (err instanceof KeyFileRace) {
          // Another process (the service or a CLI) created the file first: use its key.
          return load();
        }
        if (!envSeed) throw new KeyRingError(`cannot write signing key file ${path}: ${(err as Error).message}`);
        // With JIT_SIGNING_KEY the file only keeps public-key history for the JWKS; losing that is not fatal.
        deps.log?.warn({ path, err: (err as Error).message }, 'could not record the signing key history; previous keys may drop out of the JWKS early');
        keyFile.markSeen(); // do not retry (and warn) on every signature
      }
    }
    file = settled.file;
    setLive(currentEntry(file));
  }

  function logLoadNote(note: LoadNote | undefined): void {
    if (note?.kind === 'env_key_changed') {
      deps.log?.info({ kid: note.kid, retired: note.retired }, 'JIT_SIGNING_KEY is a new signing key; the previous key stays published for the grace period');
    } else if (note?.kind === 'generated') {
      deps.log?.info({ kid: note.kid, ...(path ? { path } : {}) }, note.envUnset ? 'JIT_SIGNING_KEY is no longer set; generated a new signing key' : 'generated a new signing key');
    }
  }

  /** Before a write: takes the key file as it is on disk now (another process may have changed it). */
  function rereadFile(): void {
    const onDisk = keyFile?.read();
    if (onDisk) file = onDisk;
  }

  /** Re-reads the key file if another process changed it (./key-file.ts decides how often to look). */
  function refresh(): void {
    keyFile?.whenChanged(load);
  }

  load();

  return {
    location: path ?? 'memory',
    current(): Signer {
      refresh();
      const key = live;
      if (!key) throw new KeyRingError('no signing key yet: one is generated when the service first starts');
      signer ??= Object.freeze({ kid: key.kid, alg: 'EdDSA', publicJwk: Object.freeze(publicJwk(key.publicKey)), sign: (bytes: Uint8Array) => ed.sign(bytes, key.seed) });
      return signer;
    },
    jwks(): Jwks {
      refresh();
      return jwksOf(file, clock.now(), graceMs);
    },
    rotate() {
      if (deps.readOnly) throw new KeyRingError('key ring opened read-only');
      if (envSeed) {
        throw new KeyRingError('the signing key comes from JIT_SIGNING_KEY; to rotate, set JIT_SIGNING_KEY to a new key and restart (the old key stays published for the grace period)');
      }
      rereadFile();
      const r = rotated(file, clock.now(), graceMs);
      keyFile?.write(r.file);
      file = r.file;
      setLive(r.file.keys[0]!);
      deps.log?.info({ kid: r.kid, retired: r.retiredKid }, 'signing key rotated');
      return { kid: r.kid, retiredKid: r.retiredKid };
    },
    list(): KeyInfo[] {
      refresh();
      return listOf(file, clock.now(), graceMs);
    },
    revoke(kid: string): RevokeResult {
      rereadFile();
      const { file: f, result } = revoked(file, kid, clock.now(), graceMs, path ?? 'memory');
      if (!f) return result;
      keyFile?.write(f);
      file = f;
      setLive(currentEntry(f));
      deps.log?.info({ kid, ...(result.rotated ? { current: live?.kid } : {}) }, 'signing key revoked');
      return result;
    },
    isRevoked(kid: string): boolean {
      refresh();
      return file.keys.some((k) => k.kid === kid && k.revoked_at !== undefined);
    },
    stop() {},
  };
}
