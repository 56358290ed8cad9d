import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { KeyRingError } from './key-file.ts';

/**
 * Sealing of private key seeds kept in the database (JIT_DATABASE_URL):
 * AES-256-GCM (node:crypto) under the key-encryption key (KEK) from
 * JIT_KEY_ENCRYPTION_KEY or JIT_KEY_ENCRYPTION_KEY_FILE.
 *
 * - A fresh random 96-bit nonce per seal; the 128-bit tag is checked on open.
 * - Associated data binds a sealed value to what it is for: the key id of
 *   the seed it holds (`signing-key:<kid>`), so a sealed seed copied into
 *   another row does not open there, and the KEK check value to its purpose.
 * - Format (text, one column): `v1.<nonce>.<ciphertext>.<tag>`, base64url.
 *
 * The KEK itself is validated by the configuration (src/config/config.ts).
 */

const VERSION = 'v1';
const PREFIX = 'jit-broker/';

/** What a sealed value is bound to (its associated data). */
export type SealPurpose = { kind: 'signing-key'; kid: string } | { kind: 'kek-check' };

function aad(purpose: SealPurpose): Buffer {
  return Buffer.from(purpose.kind === 'signing-key' ? `${PREFIX}signing-key:${purpose.kid}` : `${PREFIX}kek-check`, 'utf8');
}

/** The KEK's bytes from its configured form (base64 of 32 bytes, already validated). */
export function kekBytes(base64: string): Buffer {
  const kek = Buffer.from(base64, 'base64');
  if (kek.length !== 32) throw new KeyRingError('the key-encryption key must be 32 bytes');
  return kek;
}

export function seal(kek: Buffer, purpose: SealPurpose, plain: Uint8Array): string {
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', kek, nonce);
  cipher.setAAD(aad(purpose));
  const ct = Buffer.concat([cipher.update(plain), cipher.final()]);
  return [VERSION, nonce.toString('base64url'), ct.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
}

/** Raised when a sealed value does not open: another KEK sealed it, or it was altered or moved. */
export class UnsealError extends KeyRingError {
  override name = 'UnsealError';
}

export function open(kek: Buffer, purpose: SealPurpose, sealed: string): Buffer {
  const parts = sealed.split('.');
  if (parts.length !== 4 || parts[0] !== VERSION) throw new UnsealError('sealed value of an unknown format');
  const [, nonce, ct, tag] = parts.map((p) => Buffer.from(p!, 'base64url'));
  if (nonce!.length !== 12 || tag!.length !== 16) throw new UnsealError('sealed value of an unknown format');
  try {
    const decipher = createDecipheriv('aes-256-gcm', kek, nonce!);
    decipher.setAAD(aad(purpose));
    decipher.setAuthTag(tag!);
    return Buffer.concat([decipher.update(ct!), decipher.final()]);
  } catch {
    throw new UnsealError(purpose.kind === 'signing-key' ? `the sealed private key of ${purpose.kid} does not open with this key-encryption key` : 'the key-encryption key check does not open with this key-encryption key');
  }
}

/** The value stored beside the ring so a wrong KEK is found at start, even when no seed is stored. */
const CHECK_PLAIN = Buffer.from('jit-broker key-encryption-key check v1', 'utf8');

export function sealCheck(kek: Buffer): string {
  return seal(kek, { kind: 'kek-check' }, CHECK_PLAIN);
}

/** Throws UnsealError when `check` was not sealed with `kek`. */
export function verifyCheck(kek: Buffer, check: string): void {
  if (!open(kek, { kind: 'kek-check' }, check).equals(CHECK_PLAIN)) throw new UnsealError('the key-encryption key check does not match');
}
