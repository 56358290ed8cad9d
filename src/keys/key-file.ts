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
import { dirname } from 'node:path';
import { z } from 'zod';
import type { Clock } from '../lib/clock.ts';

// @noble/ed25519 v3 ships only async hashing; wire node's SHA-512 so the
// synchronous sign()/getPublicKey() work (sign() runs inside request paths
// that must stay synchronous, e.g. JWT minting in a transaction).
ed.hashes.sha512 = (message) => new Uint8Array(createHash('sha512').update(message).digest());

/**
 * A running ring looks at its key file (one `stat`) at most this often, so a
 * rotation by `jit keys rotate` in another process takes effect within it.
 */
export const KEY_FILE_RECHECK_MS = 1_000;

/** Name of the key file, placed next to the SQLite database. */
export const KEY_FILE_NAME = 'signing-keys.json';

export class KeyRingError extends Error {
  override name = 'KeyRingError';
}

/** Another process created the key file between our read and our write. */
export class KeyFileRace extends Error {}

/** Minimal logging surface, satisfied by the pino logger. */
export interface KeyRingLog {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

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
export type KeyEntry = z.infer<typeof KeyEntrySchema>;
export type KeyFile = z.infer<typeof KeyFileSchema>;

/** Deterministic key id: base64url of the first 12 bytes of SHA-256 of the raw public key. */
export function keyId(publicKey: Uint8Array): string {
  return createHash('sha256').update(publicKey).digest().subarray(0, 12).toString('base64url');
}

/** Consistency of a ring: one current key, kids matching public keys, private halves only (and always) on the current generated key. */
export function validate(f: KeyFile, where: string): void {
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

/** The key file as the ring sees it: read, written, and watched for changes made by another process. */
export interface KeyFileStore {
  readonly path: string;
  /** The file as it is on disk, validated; undefined when it does not exist (or, `optional`, cannot be read). */
  read(): KeyFile | undefined;
  /** Atomic write: temp file (0600) + fsync + rename; `createOnly` throws {@link KeyFileRace} instead of replacing. */
  write(f: KeyFile, createOnly?: boolean): void;
  /** Takes the file on disk as seen, so an unchanged file is not read again (after a write that failed). */
  markSeen(): void;
  /**
   * Calls `reload` if another process changed the file since it was last
   * read or written; looks (one stat) at most every `recheckMs`, by `clock`.
   * A `reload` that throws leaves the file unseen, so the next call looks again.
   */
  whenChanged(reload: () => void): void;
}

/**
 * The signing key file (`signing-keys.json`), kept apart from the database.
 *
 * Security decisions: mode 0600 (reset, with a warning, when it was readable
 * by others), written atomically (temp file + fsync + rename, and fsync of
 * the directory), strict schema and consistency checks on every read (one
 * current key, key ids matching their public keys, private halves only on
 * the current generated key).
 */
export function openKeyFile(opts: {
  path: string;
  clock: Clock;
  log?: KeyRingLog | undefined;
  /** The file only keeps history (the key comes from JIT_SIGNING_KEY): an unreadable file reads as absent. */
  optional: boolean;
  recheckMs?: number | undefined;
}): KeyFileStore {
  const { path, clock } = opts;
  const recheckMs = opts.recheckMs ?? KEY_FILE_RECHECK_MS;
  let stamp = '';
  /** When the key file was last found unchanged (ring clock); -Infinity: check on the next use. */
  let checkedAt = -Infinity;

  function statStamp(st: Stats): string {
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  }

  /** The file's identity on disk, or '' when it does not exist. */
  function diskStamp(): string {
    try {
      return statStamp(statSync(path));
    } catch {
      return '';
    }
  }

  return {
    path,
    read(): KeyFile | undefined {
      let text: string;
      let st: Stats;
      try {
        st = statSync(path);
        text = readFileSync(path, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        if (opts.optional) return undefined; // the history is optional when the key itself comes from the environment
        throw new KeyRingError(`cannot read signing key file ${path}: ${(err as Error).message}`);
      }
      if ((st.mode & 0o077) !== 0) {
        chmodSync(path, 0o600);
        opts.log?.warn({ path, mode: (st.mode & 0o777).toString(8) }, 'signing key file was readable by others; permissions reset to 0600');
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
    },
    write(f: KeyFile, createOnly = false): void {
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
    },
    markSeen(): void {
      stamp = diskStamp();
    },
    whenChanged(reload: () => void): void {
      const now = clock.now();
      if (now >= checkedAt && now - checkedAt < recheckMs) return;
      if (diskStamp() !== stamp) reload(); // throws on a bad file: checkedAt stays, so the next use looks again
      checkedAt = now;
    },
  };
}
