import { createPublicKey, type KeyObject } from 'node:crypto';

/**
 * An Ed25519 public key (a JWK's `x`) as a node KeyObject, for
 * `crypto.verify`. Imports nothing but node:crypto: `jit gate verify` loads
 * it (through gate-jwt.ts) on every push.
 */

/** Parsed public keys by JWK `x`: parsing one costs more than a tenth of a verification, and there are only a few keys. */
const keyObjects = new Map<string, KeyObject>();

/** @throws when `x` is not an Ed25519 public key (nothing is cached then). */
export function publicKeyObject(x: string): KeyObject {
  let key = keyObjects.get(x);
  if (!key) {
    key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
    if (keyObjects.size >= 64) keyObjects.clear();
    keyObjects.set(x, key);
  }
  return key;
}
