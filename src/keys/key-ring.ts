import * as ed from '@noble/ed25519';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { ConfigError, type Config } from '../config/config.ts';
import { systemClock, type Clock } from '../lib/clock.ts';

// @noble/ed25519 v3 ships only async hashing; wire node's SHA-512 so the
// synchronous sign()/getPublicKey() work (sign() runs inside request paths
// that must stay synchronous, e.g. JWT minting in a transaction).
ed.hashes.sha512 = (message) => new Uint8Array(createHash('sha512').update(message).digest());

/** Retired public keys stay in the JWKS this long after a rotation. */
export const DEFAULT_KEY_GRACE_SECONDS = 7 * 24 * 3600;

/**
 * A running ring looks at its key file (one `stat`) at most this often, so a
 * rotation by `jit keys rotate` in another process takes effect within it.
 */
export const KEY_FILE_RECHECK_MS = 1_000;

/** Name of the key file, placed next to the SQLite database. */
export const KEY_FILE_NAME = 'signing-keys.json';

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

export interface RevokeResult {
  revoked: string;
  /** The current key after the revocation. */
  current: string;
  /** The revoked key was the current one, so a new key was made current in the same write. */
  rotated: boolean;
  alreadyRevoked: boolean;
}

export interface KeyRing {
  current(): Signer;
  /** Current key first, then previous keys still inside their grace period. Public parts only. */
  jwks(): Jwks;
  /** Makes a new current key; the old one stays published (public part only) for the grace period. */
  rotate(): { kid: string; retiredKid: string };
  list(): KeyInfo[];
  /**
   * Revokes a key at once and for good: it leaves the JWKS (so what it
   * signed stops verifying), is never current again, and its public half
   * stays in the key file marked revoked. Revoking the current key first
   * rotates to a new one in the same atomic write.
   */
  revoke(kid: string): RevokeResult;
  isRevoked(kid: string): boolean;
  /** Where keys are kept: a file path, or `memory` (`:memory:` database, tests). */
  readonly location: string;
}

/** Minimal logging surface, satisfied by the pino logger. */
export interface KeyRingLog {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export class KeyRingError extends Error {
  override name = 'KeyRingError';
}

/** Another process created the key file between our read and our write. */
class KeyFileRace extends Error {}

const b64url32 = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be 32 bytes, base64url');
const KeyEntrySchema = z
  .object({
    kid: z.string().min(8).max(64),
    x: b64url32,
    /** The seed; present only on the current key of source `generated`. */
    d: b64url32.optional(),
    source: z.enum(['generated', 'env']),
    created_at: z.iso.datetime(),
    retired_at: z.iso.datetime().optional(),
    /** Set by `jit keys revoke`: never published, never current again, never pruned. */
    revoked_at: z.iso.datetime().optional(),
  })
  .strict();
const KeyFileSchema = z.object({ version: z.literal(1), keys: z.array(KeyEntrySchema).max(1000) }).strict();
type KeyEntry = z.infer<typeof KeyEntrySchema>;
type KeyFile = z.infer<typeof KeyFileSchema>;

/** Deterministic key id: base64url of the first 12 bytes of SHA-256 of the raw public key. */
export function keyId(publicKey: Uint8Array): string {
  return createHash('sha256').update(publicKey).digest().subarray(0, 12).toString('base64url');
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

/**
 * The broker's Ed25519 signing keys.
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
}): KeyRing {
  const clock = deps.clock ?? systemClock;
  const graceMs = (deps.graceSeconds ?? DEFAULT_KEY_GRACE_SECONDS) * 1000;
  const path = deps.keyFile ?? (deps.config.dbPath === ':memory:' ? undefined : join(dirname(deps.config.dbPath), KEY_FILE_NAME));
  const envSeed = deps.config.signingKey ? parseSigningKey(deps.config.signingKey) : undefined;

  const recheckMs = deps.recheckMs ?? KEY_FILE_RECHECK_MS;
  let file: KeyFile = { version: 1, keys: [] };
  let live: LiveKey | undefined;
  /** The Signer of `live`, made once per key. */
  let signer: Signer | undefined;
  let stamp = '';
  /** When the key file was last found unchanged (ring clock); -Infinity: check on the next use. */
  let checkedAt = -Infinity;

  const iso = (ms: number) => new Date(ms).toISOString();
  const ms = (s: string) => Date.parse(s);

  function setLive(entry: KeyEntry | undefined): void {
    signer = undefined;
    if (!entry) {
      live = undefined;
      return;
    }
    const seed = entry.source === 'env' ? envSeed! : new Uint8Array(Buffer.from(entry.d!, 'base64url'));
    live = { kid: entry.kid, seed, publicKey: new Uint8Array(Buffer.from(entry.x, 'base64url')), source: entry.source };
  }

  function newEntry(seed: Uint8Array, source: 'generated' | 'env'): KeyEntry {
    const pub = ed.getPublicKey(seed);
    return {
      kid: keyId(pub),
      x: Buffer.from(pub).toString('base64url'),
      ...(source === 'generated' ? { d: Buffer.from(seed).toString('base64url') } : {}),
      source,
      created_at: iso(clock.now()),
    };
  }

  /** Retires the current entry (erasing its seed) and drops retired entries past the grace period. */
  function retireCurrent(f: KeyFile): KeyFile {
    const now = clock.now();
    return {
      version: 1,
      keys: f.keys.map((k) => (k.retired_at ? k : { kid: k.kid, x: k.x, source: k.source, created_at: k.created_at, retired_at: iso(now) })),
    };
  }
  /** Retires the current entry and puts a newly generated key first, as the current one. */
  function withNewCurrent(f: KeyFile): KeyFile {
    const next = retireCurrent(f);
    next.keys.unshift(newEntry(ed.utils.randomSecretKey(), 'generated'));
    return next;
  }
  function prune(f: KeyFile): KeyFile {
    const now = clock.now();
    return { version: 1, keys: f.keys.filter((k) => !k.retired_at || k.revoked_at || ms(k.retired_at) + graceMs > now) };
  }

  function validate(f: KeyFile, where: string): void {
    const current = f.keys.filter((k) => !k.retired_at);
    if (current.length > 1) throw new KeyRingError(`${where}: more than one current key`);
    for (const k of f.keys) {
      if (k.revoked_at && !k.retired_at) throw new KeyRingError(`${where}: revoked key ${k.kid} is marked current`);
      const pub = Buffer.from(k.x, 'base64url');
      if (keyId(pub) !== k.kid) throw new KeyRingError(`${where}: key ${k.kid} does not match its public key`);
      if (k.d !== undefined) {
        if (k.retired_at) throw new KeyRingError(`${where}: retired key ${k.kid} still holds a private key`);
        if (!Buffer.from(ed.getPublicKey(Buffer.from(k.d, 'base64url'))).equals(pub)) {
          throw new KeyRingError(`${where}: private key of ${k.kid} does not match its public key`);
        }
      } else if (!k.retired_at && k.source === 'generated') {
        throw new KeyRingError(`${where}: current key ${k.kid} has no private key`);
      }
    }
  }

  function statStamp(st: Stats): string {
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  }

  function readFile(): KeyFile | undefined {
    if (!path) return undefined;
    let text: string;
    let st: Stats;
    try {
      st = statSync(path);
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      if (envSeed) return undefined; // the history is optional when the key itself comes from the environment
      throw new KeyRingError(`cannot read signing key file ${path}: ${(err as Error).message}`);
    }
    if ((st.mode & 0o077) !== 0) {
      chmodSync(path, 0o600);
      deps.log?.warn({ path, mode: (st.mode & 0o777).toString(8) }, 'signing key file was readable by others; permissions reset to 0600');
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new KeyRingError(`signing key file ${path} is not valid JSON; restore it from a backup or remove it to generate a new key`);
    }
    const result = KeyFileSchema.safeParse(parsed);
    if (!result.success) {
      const issue = result.error.issues[0]!;
      throw new KeyRingError(`signing key file ${path} is invalid at ${issue.path.join('.') || '(root)'}: ${issue.message}`);
    }
    validate(result.data, `signing key file ${path}`);
    stamp = statStamp(statSync(path));
    return result.data;
  }

  /** Atomic write: temp file (0600) + fsync + rename; `createOnly` fails with EEXIST instead of replacing. */
  function writeFile(f: KeyFile, createOnly = false): void {
    if (!path) return;
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, `${JSON.stringify(f, null, 2)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      if (createOnly) {
        linkSync(tmp, path);
        unlinkSync(tmp);
      } else {
        renameSync(tmp, path);
      }
    } catch (err) {
      try {
        unlinkSync(tmp);
      } catch {
        /* already gone */
      }
      if (createOnly && (err as NodeJS.ErrnoException).code === 'EEXIST') throw new KeyFileRace();
      throw err;
    }
    try {
      const dirFd = openSync(dirname(path), 'r');
      fsyncSync(dirFd);
      closeSync(dirFd);
    } catch {
      /* best effort: not every filesystem allows fsync on a directory */
    }
    stamp = statStamp(statSync(path));
  }

  /** Brings `file`/`live` in line with the file on disk and the environment, writing back what changed. */
  function load(): void {
    const existed = readFile();
    let f = existed ?? { version: 1 as const, keys: [] };
    let changed = false;
    const current = f.keys.find((k) => !k.retired_at);
    if (envSeed) {
      const envKid = keyId(ed.getPublicKey(envSeed));
      const revoked = f.keys.find((k) => k.kid === envKid && k.revoked_at);
      if (revoked) {
        throw new KeyRingError(`JIT_SIGNING_KEY is key ${envKid}, revoked at ${revoked.revoked_at}; set JIT_SIGNING_KEY to a new key (a revoked key is never used again)`);
      }
      if (current?.kid !== envKid) {
        f = retireCurrent(f);
        f.keys = f.keys.filter((k) => k.kid !== envKid);
        f.keys.unshift(newEntry(envSeed, 'env'));
        changed = true;
        if (current) deps.log?.info({ kid: envKid, retired: current.kid }, 'JIT_SIGNING_KEY is a new signing key; the previous key stays published for the grace period');
      }
    } else if ((!current || current.source === 'env') && deps.readOnly) {
      f = retireCurrent(f);
    } else if (!current || current.source === 'env') {
      f = retireCurrent(f);
      f.keys.unshift(newEntry(ed.utils.randomSecretKey(), 'generated'));
      changed = true;
      deps.log?.info({ kid: f.keys[0]!.kid, ...(path ? { path } : {}) }, current ? 'JIT_SIGNING_KEY is no longer set; generated a new signing key' : 'generated a new signing key');
    }
    const pruned = prune(f);
    if (pruned.keys.length !== f.keys.length) changed = true;
    f = pruned;
    if (changed && path && !deps.readOnly) {
      try {
        writeFile(f, existed === undefined);
      } catch (err) {
        if (err instanceof KeyFileRace) {
          // Another process (the service or a CLI) created the file first: use its key.
          return load();
        }
        if (!envSeed) throw new KeyRingError(`cannot write signing key file ${path}: ${(err as Error).message}`);
        // With JIT_SIGNING_KEY the file only keeps public-key history for the JWKS; losing that is not fatal.
        deps.log?.warn({ path, err: (err as Error).message }, 'could not record the signing key history; previous keys may drop out of the JWKS early');
        stamp = diskStamp(); // do not retry (and warn) on every signature
      }
    }
    file = f;
    setLive(f.keys.find((k) => !k.retired_at));
  }

  function statusOf(k: KeyEntry): KeyInfo['status'] {
    return k.revoked_at ? 'revoked' : k.retired_at ? 'previous' : 'current';
  }

  /** Before a write: takes the key file as it is on disk now (another process may have changed it). */
  function rereadFile(): void {
    if (!path) return;
    const onDisk = readFile();
    if (onDisk) file = onDisk;
  }

  /** The file's identity on disk, or '' when it does not exist. */
  function diskStamp(): string {
    try {
      return statStamp(statSync(path!));
    } catch {
      return '';
    }
  }

  /** Re-reads the key file if another process changed it; looks (one stat) at most every `recheckMs`. */
  function refresh(): void {
    if (!path) return;
    const now = clock.now();
    if (now >= checkedAt && now - checkedAt < recheckMs) return;
    if (diskStamp() !== stamp) load(); // throws on a bad file: checkedAt stays, so the next use looks again
    checkedAt = now;
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
      const now = clock.now();
      const keys = file.keys
        .filter((k) => !k.revoked_at && (!k.retired_at || ms(k.retired_at) + graceMs > now))
        .sort((a, b) => Number(!!a.retired_at) - Number(!!b.retired_at));
      return { keys: keys.map((k) => publicJwk(Buffer.from(k.x, 'base64url'))) };
    },
    rotate() {
      if (deps.readOnly) throw new KeyRingError('key ring opened read-only');
      if (envSeed) {
        throw new KeyRingError('the signing key comes from JIT_SIGNING_KEY; to rotate, set JIT_SIGNING_KEY to a new key and restart (the old key stays published for the grace period)');
      }
      rereadFile();
      const retiredKid = file.keys.find((k) => !k.retired_at)?.kid ?? '-';
      const f = prune(withNewCurrent(file));
      if (path) writeFile(f);
      file = f;
      setLive(f.keys[0]!);
      deps.log?.info({ kid: live!.kid, retired: retiredKid }, 'signing key rotated');
      return { kid: live!.kid, retiredKid };
    },
    list(): KeyInfo[] {
      refresh();
      return prune(file).keys.map((k) => ({
        kid: k.kid,
        status: statusOf(k),
        source: k.source,
        createdAt: ms(k.created_at),
        ...(k.retired_at ? { retiredAt: ms(k.retired_at) } : {}),
        ...(k.revoked_at ? { revokedAt: ms(k.revoked_at) } : k.retired_at ? { dropsAt: ms(k.retired_at) + graceMs } : {}),
      }));
    },
    revoke(kid: string): RevokeResult {
      rereadFile();
      const entry = file.keys.find((k) => k.kid === kid);
      if (!entry) {
        throw new KeyRingError(`no key ${kid} in ${path ?? 'memory'} (a key that is not listed by "jit keys list" is already out of the JWKS)`);
      }
      const currentKid = () => file.keys.find((k) => !k.retired_at)?.kid ?? '-';
      if (entry.revoked_at) return { revoked: kid, current: currentKid(), rotated: false, alreadyRevoked: true };
      let f = file;
      const rotated = !entry.retired_at;
      if (rotated) {
        // The current key: the service must keep signing (webhooks, gate credentials), so a
        // new key takes its place in the same write; never a moment with the revoked key current or none.
        if (entry.source === 'env') {
          throw new KeyRingError(`key ${kid} is the current key and comes from JIT_SIGNING_KEY; set JIT_SIGNING_KEY to a new key and restart the service, then revoke ${kid}`);
        }
        f = withNewCurrent(f);
      }
      const now = iso(clock.now());
      f = prune({
        version: 1,
        keys: f.keys.map((k) => (k.kid === kid ? { kid: k.kid, x: k.x, source: k.source, created_at: k.created_at, retired_at: k.retired_at ?? now, revoked_at: now } : k)),
      });
      if (path) writeFile(f);
      file = f;
      setLive(f.keys.find((k) => !k.retired_at));
      deps.log?.info({ kid, ...(rotated ? { current: live?.kid } : {}) }, 'signing key revoked');
      return { revoked: kid, current: currentKid(), rotated, alreadyRevoked: false };
    },
    isRevoked(kid: string): boolean {
      refresh();
      return file.keys.some((k) => k.kid === kid && k.revoked_at !== undefined);
    },
  };
}
