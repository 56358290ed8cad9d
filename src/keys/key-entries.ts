import * as ed from '@noble/ed25519';
import { KeyRingError, keyId, type KeyEntry, type KeyFile } from './key-file.ts';

/**
 * What the key ring does to the key file's entries, without reading or
 * writing anything: new keys, retirement, the grace period, revocation, and
 * settling the file against JIT_SIGNING_KEY at load. Every function returns a
 * new KeyFile and leaves its argument alone. The key ring (./key-ring.ts)
 * holds the state and does the I/O through ./key-file.ts.
 */

const iso = (ms: number) => new Date(ms).toISOString();
export const ms = (s: string) => Date.parse(s);

/** The current entry: the one not retired. */
export function currentEntry(f: KeyFile): KeyEntry | undefined {
  return f.keys.find((k) => !k.retired_at);
}

export function newEntry(seed: Uint8Array, source: 'generated' | 'env', now: number): KeyEntry {
  const pub = ed.getPublicKey(seed);
  return {
    kid: keyId(pub),
    x: Buffer.from(pub).toString('base64url'),
    ...(source === 'generated' ? { d: Buffer.from(seed).toString('base64url') } : {}),
    source,
    created_at: iso(now),
  };
}

/** Retires the current entry (erasing its seed). */
export function retireCurrent(f: KeyFile, now: number): KeyFile {
  return {
    version: 1,
    keys: f.keys.map((k) => (k.retired_at ? k : { kid: k.kid, x: k.x, source: k.source, created_at: k.created_at, retired_at: iso(now) })),
  };
}

/** Retires the current entry and puts a newly generated key first, as the current one. */
export function withNewCurrent(f: KeyFile, now: number): KeyFile {
  const next = retireCurrent(f, now);
  next.keys.unshift(newEntry(ed.utils.randomSecretKey(), 'generated', now));
  return next;
}

/** A retired key still inside its grace period (a revoked one is never published). */
function inGrace(k: KeyEntry, now: number, graceMs: number): boolean {
  return !k.retired_at || ms(k.retired_at) + graceMs > now;
}

/** Drops retired entries past the grace period; revoked entries stay for good. */
export function prune(f: KeyFile, now: number, graceMs: number): KeyFile {
  return { version: 1, keys: f.keys.filter((k) => k.revoked_at || inGrace(k, now, graceMs)) };
}

/** The entries the JWKS publishes: current first, then previous keys inside the grace period. */
export function publishedEntries(f: KeyFile, now: number, graceMs: number): KeyEntry[] {
  return f.keys.filter((k) => !k.revoked_at && inGrace(k, now, graceMs)).sort((a, b) => Number(!!a.retired_at) - Number(!!b.retired_at));
}

/** Marks `kid` revoked (public half only) and retired, as of `now`. */
export function markRevoked(f: KeyFile, kid: string, now: number): KeyFile {
  const at = iso(now);
  return {
    version: 1,
    keys: f.keys.map((k) => (k.kid === kid ? { kid: k.kid, x: k.x, source: k.source, created_at: k.created_at, retired_at: k.retired_at ?? at, revoked_at: at } : k)),
  };
}

/** What settling the file at load did, for the key ring's log. */
export type LoadNote = { kind: 'env_key_changed'; kid: string; retired: string } | { kind: 'generated'; kid: string; envUnset: boolean };

/**
 * The key file as it must be after load, given JIT_SIGNING_KEY (`envSeed`):
 * the env key made current (a previous key retired), or, without one, a new
 * generated key when there is none or the current one came from the
 * environment (only retired when `readOnly`); then pruned. `changed`: the
 * file on disk must be written.
 *
 * @throws KeyRingError when JIT_SIGNING_KEY is a revoked key.
 */
export function settleAtLoad(
  f: KeyFile,
  opts: { envSeed: Uint8Array | undefined; readOnly: boolean; now: number; graceMs: number },
): { file: KeyFile; changed: boolean; note?: LoadNote } {
  const { envSeed, now } = opts;
  let changed = false;
  let note: LoadNote | undefined;
  const current = currentEntry(f);
  if (envSeed) {
    const envKid = keyId(ed.getPublicKey(envSeed));
    const revoked = f.keys.find((k) => k.kid === envKid && k.revoked_at);
    if (revoked) {
      throw new KeyRingError(`JIT_SIGNING_KEY is key ${envKid}, revoked at ${revoked.revoked_at}; set JIT_SIGNING_KEY to a new key (a revoked key is never used again)`);
    }
    if (current?.kid !== envKid) {
      f = retireCurrent(f, now);
      f.keys = f.keys.filter((k) => k.kid !== envKid);
      f.keys.unshift(newEntry(envSeed, 'env', now));
      changed = true;
      if (current) note = { kind: 'env_key_changed', kid: envKid, retired: current.kid };
    }
  } else if ((!current || current.source === 'env') && opts.readOnly) {
    f = retireCurrent(f, now);
  } else if (!current || current.source === 'env') {
    f = withNewCurrent(f, now);
    changed = true;
    note = { kind: 'generated', kid: f.keys[0]!.kid, envUnset: current !== undefined };
  }
  const pruned = prune(f, now, opts.graceMs);
  if (pruned.keys.length !== f.keys.length) changed = true;
  return { file: pruned, changed, ...(note ? { note } : {}) };
}

/**
 * A rotation of `f`: a new generated key made current, the previous one
 * retired (public half only), then pruned. Both rings (file and database)
 * apply it to the ring as it is in their store at the time of the write.
 */
export function rotated(f: KeyFile, now: number, graceMs: number): { file: KeyFile; kid: string; retiredKid: string } {
  const retiredKid = currentEntry(f)?.kid ?? '-';
  const file = prune(withNewCurrent(f, now), now, graceMs);
  return { file, kid: file.keys[0]!.kid, retiredKid };
}

export interface RevokeResult {
  revoked: string;
  /** The current key after the revocation. */
  current: string;
  /** The revoked key was the current one, so a new key was made current in the same write. */
  rotated: boolean;
  alreadyRevoked: boolean;
}

/**
 * The revocation of `kid` in `f` (`where` names the store in errors):
 * `file` is undefined when nothing changes (already revoked). Revoking the
 * current key first makes a new one current, in the same write: the
 * service keeps signing, never with the revoked key, never without a key.
 *
 * @throws KeyRingError for an unknown kid, or the current key when it comes from JIT_SIGNING_KEY.
 */
export function revoked(f: KeyFile, kid: string, now: number, graceMs: number, where: string): { file: KeyFile | undefined; result: RevokeResult } {
  const entry = f.keys.find((k) => k.kid === kid);
  if (!entry) {
    throw new KeyRingError(`no key ${kid} in ${where} (a key that is not listed by "jit keys list" is already out of the JWKS)`);
  }
  if (entry.revoked_at) return { file: undefined, result: { revoked: kid, current: currentEntry(f)?.kid ?? '-', rotated: false, alreadyRevoked: true } };
  const rotatedNow = !entry.retired_at;
  let next = f;
  if (rotatedNow) {
    if (entry.source === 'env') {
      throw new KeyRingError(`key ${kid} is the current key and comes from JIT_SIGNING_KEY; set JIT_SIGNING_KEY to a new key and restart the service, then revoke ${kid}`);
    }
    next = withNewCurrent(next, now);
  }
  next = prune(markRevoked(next, kid, now), now, graceMs);
  return { file: next, result: { revoked: kid, current: currentEntry(next)?.kid ?? '-', rotated: rotatedNow, alreadyRevoked: false } };
}
