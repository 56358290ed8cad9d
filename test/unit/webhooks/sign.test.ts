import * as ed from '@noble/ed25519';
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createKeyRing, publicJwk, type Jwks } from '../../../src/keys/key-ring.ts';
import { signWebhook, verifyWebhook, type WebhookHeaders } from '../../../src/webhooks/sign.ts';

const ring = createKeyRing({ config: { dbPath: ':memory:' } });
const jwks = ring.jwks();
const NOW = Date.UTC(2026, 0, 1, 12);
const TS = Math.floor(NOW / 1000);
const BODY = JSON.stringify({ type: 'jit.request.approved', id: 'evt_01', request_id: 'req_01' });
const signed = () => signWebhook(ring.current(), { id: 'evt_01', timestamp: TS, body: BODY });

function otherJwks(): Jwks {
  const seed = ed.utils.randomSecretKey();
  return { keys: [publicJwk(ed.getPublicKey(seed))] };
}

describe('Standard Webhooks v1a signing', () => {
  it('produces the three headers; node:crypto verifies them against the JWKS key', () => {
    const h = signed();
    expect(h['webhook-id']).toBe('evt_01');
    expect(h['webhook-timestamp']).toBe(String(TS));
    expect(h['webhook-signature']).toMatch(/^v1a,[A-Za-z0-9+/]{86}==$/);
    expect(Buffer.from(h['webhook-signature'].slice(4), 'base64')).toHaveLength(64);
    expect(verifyWebhook(h, BODY, jwks, { now: NOW })).toEqual({ ok: true, id: 'evt_01', timestamp: TS, kid: ring.current().kid });
  });

  it('accepts Fetch Headers and node-style header records, and raw bytes as body', () => {
    const h = signed();
    expect(verifyWebhook(new Headers(h), Buffer.from(BODY), jwks, { now: NOW }).ok).toBe(true);
    expect(verifyWebhook({ 'Webhook-Id': h['webhook-id'], 'WEBHOOK-TIMESTAMP': h['webhook-timestamp'], 'webhook-signature': h['webhook-signature'] }, BODY, jwks, { now: NOW }).ok).toBe(true);
  });

  it('accepts a space-separated signature list with one valid v1a entry (and ignores v1 HMAC entries)', () => {
    const h = signed();
    const list = `v1,${Buffer.alloc(32).toString('base64')} v1a,${Buffer.alloc(64).toString('base64')} ${h['webhook-signature']}`;
    expect(verifyWebhook({ ...h, 'webhook-signature': list }, BODY, jwks, { now: NOW }).ok).toBe(true);
  });

  describe.each<[string, (h: WebhookHeaders) => [WebhookHeaders, string, Jwks]]>([
    ['body changed', (h) => [h, BODY.replace('approved', 'denied'), jwks]],
    ['body with trailing whitespace', (h) => [h, `${BODY}\n`, jwks]],
    ['id changed', (h) => [{ ...h, 'webhook-id': 'evt_02' }, BODY, jwks]],
    ['timestamp changed within tolerance', (h) => [{ ...h, 'webhook-timestamp': String(TS + 1) }, BODY, jwks]],
    ['signature byte flipped', (h) => {
      const sig = Buffer.from(h['webhook-signature'].slice(4), 'base64');
      sig[10] = sig[10]! ^ 1;
      return [{ ...h, 'webhook-signature': `v1a,${sig.toString('base64')}` }, BODY, jwks];
    }],
    ['signature truncated', (h) => [{ ...h, 'webhook-signature': h['webhook-signature'].slice(0, -8) }, BODY, jwks]],
    ['signature under another version tag', (h) => [{ ...h, 'webhook-signature': h['webhook-signature'].replace('v1a,', 'v1,') }, BODY, jwks]],
    ['verified with the wrong key', (h) => [h, BODY, otherJwks()]],
  ])('tampering: %s', (_name, tamper) => {
    it('fails verification', () => {
      const [h, body, keys] = tamper(signed());
      expect(verifyWebhook(h, body, keys, { now: NOW })).toEqual({ ok: false, reason: 'no_matching_signature' });
    });
  });

  it('enforces the timestamp tolerance (default 5 minutes, both directions)', () => {
    const h = signed();
    expect(verifyWebhook(h, BODY, jwks, { now: NOW + 300_000 }).ok).toBe(true);
    expect(verifyWebhook(h, BODY, jwks, { now: NOW + 301_000 })).toEqual({ ok: false, reason: 'timestamp_too_old' });
    expect(verifyWebhook(h, BODY, jwks, { now: NOW - 301_000 })).toEqual({ ok: false, reason: 'timestamp_too_new' });
    expect(verifyWebhook(h, BODY, jwks, { now: NOW + 30_000, toleranceSeconds: 10 })).toEqual({ ok: false, reason: 'timestamp_too_old' });
  });

  it('rejects missing headers, ids with ".", malformed timestamps, and a JWKS without Ed25519 keys', () => {
    const h = signed();
    const { ['webhook-signature']: _s, ...noSig } = h;
    expect(verifyWebhook(noSig, BODY, jwks, { now: NOW })).toEqual({ ok: false, reason: 'missing_headers' });
    expect(verifyWebhook({ ...h, 'webhook-id': 'evt.1' }, BODY, jwks, { now: NOW })).toEqual({ ok: false, reason: 'bad_id' });
    expect(verifyWebhook({ ...h, 'webhook-timestamp': `${TS}.5` }, BODY, jwks, { now: NOW })).toEqual({ ok: false, reason: 'bad_timestamp' });
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' });
    expect(verifyWebhook(h, BODY, { keys: [rsa] }, { now: NOW })).toEqual({ ok: false, reason: 'no_usable_key' });
  });

  it('refuses to sign an id that would make the signed content ambiguous', () => {
    expect(() => signWebhook(ring.current(), { id: 'a.b', timestamp: TS, body: BODY })).toThrow(/webhook id/);
  });
});
