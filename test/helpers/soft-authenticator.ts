import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import type {
  AuthenticationResponseJSON,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
} from '@simplewebauthn/server';

/*
 * A software WebAuthn authenticator for tests: P-256 (ES256) key pairs made
 * with node:crypto, 'none' attestation, authenticator data with the RP id
 * hash, flags and a signature counter, and client data as a browser writes
 * it. What it produces is verified for real by @simplewebauthn/server; tests
 * bend one thing at a time (origin, challenge, counter) to see it refused.
 */

const FLAG_UP = 0x01;
const FLAG_UV = 0x04;
const FLAG_AT = 0x40;

/** The few CBOR items WebAuthn needs: unsigned and negative integers, byte and text strings, maps. */
type Cbor = number | string | Uint8Array | Map<number | string, Cbor>;

function cborHead(major: number, n: number): Buffer {
  if (n < 24) return Buffer.from([(major << 5) | n]);
  if (n < 0x100) return Buffer.from([(major << 5) | 24, n]);
  if (n < 0x10000) return Buffer.from([(major << 5) | 25, n >> 8, n & 0xff]);
  const b = Buffer.alloc(5);
  b[0] = (major << 5) | 26;
  b.writeUInt32BE(n, 1);
  return b;
}

export function cbor(v: Cbor): Buffer {
  if (typeof v === 'number') return v >= 0 ? cborHead(0, v) : cborHead(1, -1 - v);
  if (typeof v === 'string') {
    const bytes = Buffer.from(v, 'utf8');
    return Buffer.concat([cborHead(3, bytes.length), bytes]);
  }
  if (v instanceof Uint8Array) return Buffer.concat([cborHead(2, v.length), Buffer.from(v)]);
  return Buffer.concat([cborHead(5, v.size), ...[...v].flatMap(([k, x]) => [cbor(k), cbor(x)])]);
}

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest();
const b64url = (b: Buffer | Uint8Array) => Buffer.from(b).toString('base64url');

export interface SoftCredential {
  id: string;
  rpId: string;
  userHandle: string;
  privateKey: KeyObject;
  counter: number;
}

export interface SoftAuthenticatorOptions {
  /** The origin the "browser" reports in client data (the page's origin). */
  origin: string;
  /** Whether the user is verified (UV flag); default true. */
  userVerified?: boolean;
  /** How much the counter moves per assertion; 0 like many platform passkeys. Default 1. */
  counterStep?: number;
}

export class SoftAuthenticator {
  readonly credentials: SoftCredential[] = [];
  origin: string;
  userVerified: boolean;
  counterStep: number;

  constructor(o: SoftAuthenticatorOptions) {
    this.origin = o.origin;
    this.userVerified = o.userVerified ?? true;
    this.counterStep = o.counterStep ?? 1;
  }

  #flags(extra = 0): number {
    return FLAG_UP | (this.userVerified ? FLAG_UV : 0) | extra;
  }

  #clientData(type: 'webauthn.create' | 'webauthn.get', challenge: string, origin: string): Buffer {
    return Buffer.from(JSON.stringify({ type, challenge, origin, crossOrigin: false }), 'utf8');
  }

  /** navigator.credentials.create(): a new discoverable credential for the options' RP and user. */
  register(options: PublicKeyCredentialCreationOptionsJSON, o: { origin?: string } = {}): RegistrationResponseJSON {
    const rpId = options.rp.id!;
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = publicKey.export({ format: 'jwk' });
    const coseKey = cbor(
      new Map<number, Cbor>([
        [1, 2], // kty: EC2
        [3, -7], // alg: ES256
        [-1, 1], // crv: P-256
        [-2, Buffer.from(jwk.x!, 'base64url')],
        [-3, Buffer.from(jwk.y!, 'base64url')],
      ]),
    );
    const credId = randomBytes(16);
    const counter = 0;
    const counterBytes = Buffer.alloc(4);
    counterBytes.writeUInt32BE(counter);
    const credIdLength = Buffer.alloc(2);
    credIdLength.writeUInt16BE(credId.length);
    const authData = Buffer.concat([sha256(rpId), Buffer.from([this.#flags(FLAG_AT)]), counterBytes, Buffer.alloc(16), credIdLength, credId, coseKey]);
    const attestationObject = cbor(new Map<string, Cbor>([['fmt', 'none'], ['attStmt', new Map()], ['authData', authData]]));
    const clientDataJSON = this.#clientData('webauthn.create', options.challenge, o.origin ?? this.origin);
    this.credentials.push({ id: b64url(credId), rpId, userHandle: options.user.id, privateKey, counter });
    return {
      id: b64url(credId),
      rawId: b64url(credId),
      type: 'public-key',
      response: { clientDataJSON: b64url(clientDataJSON), attestationObject: b64url(attestationObject), transports: ['internal'] },
      clientExtensionResults: {},
      authenticatorAttachment: 'platform',
    };
  }

  /**
   * navigator.credentials.get(): an assertion over the options' challenge by
   * the first allowed credential held (any of the RP's when the options list
   * none: discoverable), or `credentialId`.
   */
  assert(options: PublicKeyCredentialRequestOptionsJSON, o: { origin?: string; credentialId?: string; challenge?: string } = {}): AuthenticationResponseJSON {
    const rpId = options.rpId!;
    const allowed = options.allowCredentials?.map((c) => c.id);
    const credential = this.credentials.find(
      (c) => c.rpId === rpId && (o.credentialId ? c.id === o.credentialId : !allowed?.length || allowed.includes(c.id)),
    );
    if (!credential) throw new Error('the soft authenticator holds no credential these options allow');
    credential.counter += this.counterStep;
    const counterBytes = Buffer.alloc(4);
    counterBytes.writeUInt32BE(credential.counter);
    const authData = Buffer.concat([sha256(rpId), Buffer.from([this.#flags()]), counterBytes]);
    const clientDataJSON = this.#clientData('webauthn.get', o.challenge ?? options.challenge, o.origin ?? this.origin);
    const signature = sign('sha256', Buffer.concat([authData, sha256(clientDataJSON)]), credential.privateKey);
    return {
      id: credential.id,
      rawId: credential.id,
      type: 'public-key',
      response: { clientDataJSON: b64url(clientDataJSON), authenticatorData: b64url(authData), signature: b64url(signature), userHandle: credential.userHandle },
      clientExtensionResults: {},
      authenticatorAttachment: 'platform',
    };
  }
}
