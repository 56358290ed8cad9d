import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { createHmac } from 'node:crypto';
import { decideRequest } from '../../../src/broker/decide.ts';
import { signGateJwt } from '../../../src/broker/gate-jwt.ts';
import { createKeyRing } from '../../../src/keys/key-ring.ts';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';

let h: Harness;
let token: string;
beforeEach(async () => {
  h = await startHarness();
  token = await h.addAgent('moltbot');
});
afterEach(async () => {
  await h.close();
});

const gate = (refs: string[], tier = 1, repo = 'homelab/app') => ({ resource: 'gate', tier, reason: 'push the fix branch', repo, refs });

async function issue(refs = ['refs/heads/agent/fix-1']) {
  const res = await h.call('POST', '/jit/request', { token, body: gate(refs) });
  expect(res.status).toBe(201);
  return res.body;
}

const verify = (credential: string, ref: string, repo = 'homelab/app') => h.call('POST', '/gate/verify', { body: { credential, repo, ref } });

describe('gate credentials', () => {
  it('issues an EdDSA JWT that jose verifies against the published JWKS', async () => {
    const issued = await issue();
    expect(issued).toMatchObject({ status: 'issued', resource: 'gate', credential: { type: 'gate_push', repo: 'homelab/app', refs: ['refs/heads/agent/fix-1'] } });
    const jwks = (await h.call('GET', '/.well-known/jwks.json')).body;
    expect(jwks.keys[0]).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', kid: expect.any(String) });
    const { payload, protectedHeader } = await jwtVerify(issued.credential.credential, createLocalJWKSet(jwks), {
      algorithms: ['EdDSA'],
      currentDate: new Date(h.clock.now()),
    });
    expect(protectedHeader.kid).toBe(jwks.keys[0].kid);
    expect(payload).toMatchObject({ sub: 'moltbot', repo: 'homelab/app', refs: ['refs/heads/agent/fix-1'], jti: issued.credential.jti, request_id: issued.id });
    expect(payload.exp! - payload.iat!).toBe(3600);
  });

  it('verifies the granted ref and refuses others, other repos, tampering', async () => {
    const { credential } = (await issue()).credential;
    expect((await verify(credential, 'refs/heads/agent/fix-1')).body).toMatchObject({ valid: true, agent: 'moltbot' });
    const cases: [string, string, string, RegExp][] = [
      ['other ref', credential, 'refs/heads/main', /not among the granted refs/],
      ['other repo', credential, 'refs/heads/agent/fix-1', /not homelab\/other/],
      ['tampered payload', credential.replace(/\.([^.]+)\./, (_m: string, p: string) => `.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), refs: ['refs/heads/main'] })).toString('base64url')}.`), 'refs/heads/main', /bad signature/],
      ['truncated signature', credential.slice(0, -4), 'refs/heads/agent/fix-1', /bad signature|malformed/],
      ['alg none', `${Buffer.from('{"alg":"none"}').toString('base64url')}.${credential.split('.')[1]}.x`, 'refs/heads/agent/fix-1', /unsupported algorithm/],
      ['garbage', 'not-a-jwt', 'refs/heads/agent/fix-1', /malformed/],
    ];
    for (const [name, cred, ref, reason] of cases) {
      const res = await verify(cred, ref, name === 'other repo' ? 'homelab/other' : 'homelab/app');
      expect(res.status, name).toBe(200);
      expect(res.body.valid, name).toBe(false);
      expect(res.body.reason, name).toMatch(reason);
    }
  });

  it('refuses a foreign key, HS256, and a credential not yet valid', async () => {
    const issued = await issue();
    const [h64, p64] = issued.credential.credential.split('.');
    const claims = JSON.parse(Buffer.from(p64, 'base64url').toString());
    const stranger = createKeyRing({ config: { dbPath: ':memory:' } });
    const foreign = signGateJwt(stranger, claims);
    expect((await verify(foreign, 'refs/heads/agent/fix-1')).body).toMatchObject({ valid: false, reason: expect.stringMatching(/unknown key/) });

    // A forged kid naming the broker's key, signed by the stranger's key.
    const realKid = JSON.parse(Buffer.from(h64, 'base64url').toString()).kid;
    const forgedHeader = Buffer.from(JSON.stringify({ alg: 'EdDSA', typ: 'JWT', kid: realKid })).toString('base64url');
    const forgedSig = Buffer.from(stranger.current().sign(new TextEncoder().encode(`${forgedHeader}.${p64}`))).toString('base64url');
    expect((await verify(`${forgedHeader}.${p64}.${forgedSig}`, 'refs/heads/agent/fix-1')).body).toMatchObject({ valid: false, reason: 'bad signature' });

    // HS256 keyed with the public key: the classic algorithm-confusion forgery.
    const hsHeader = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid: realKid })).toString('base64url');
    const jwks = (await h.call('GET', '/.well-known/jwks.json')).body;
    const hsSig = createHmac('sha256', Buffer.from(jwks.keys[0].x, 'base64url')).update(`${hsHeader}.${p64}`).digest('base64url');
    expect((await verify(`${hsHeader}.${p64}.${hsSig}`, 'refs/heads/agent/fix-1')).body).toMatchObject({ valid: false, reason: expect.stringMatching(/unsupported algorithm/) });

    const future = signGateJwt(h.broker.deps.keys, { ...claims, iat: claims.iat + 3600, exp: claims.exp + 3600 });
    expect((await verify(future, 'refs/heads/agent/fix-1')).body).toMatchObject({ valid: false, reason: 'issued in the future' });
  });

  it('refuses an expired credential, and one whose request was revoked', async () => {
    const a = await issue();
    const b = await issue(['refs/heads/agent/fix-2']);
    await h.call('POST', `/jit/requests/${b.id}/revoke`, { token });
    expect((await verify(b.credential.credential, 'refs/heads/agent/fix-2')).body).toEqual({ valid: false, reason: 'revoked' });
    h.clock.advance(3600_000 + 31_000);
    expect((await verify(a.credential.credential, 'refs/heads/agent/fix-1')).body).toMatchObject({ valid: false, reason: expect.stringMatching(/^expired/) });
  });

  it('goes through approval and claim at tier 2, and honours the gate deny list', async () => {
    const pending = await h.call('POST', '/jit/request', { token, body: gate(['refs/heads/release/2.0']) });
    expect(pending.status).toBe(202);
    await decideRequest(h.broker.deps, pending.body.id, { approver: 'local-cli', decision: 'approve' });
    const claim = await h.call('POST', `/jit/requests/${pending.body.id}/claim`, { token });
    expect(claim.status).toBe(201);
    expect(claim.body.credential.type).toBe('gate_push');
    expect((await verify(claim.body.credential.credential, 'refs/heads/release/2.0')).body.valid).toBe(true);

    const denied = await h.call('POST', '/jit/request', { token, body: gate(['refs/heads/agent/x'], 1, 'homelab/vault-config') });
    expect(denied.status).toBe(403);
    expect(denied.body.code).toBe('DENIED_BY_POLICY');
    const uncovered = await h.call('POST', '/jit/request', { token, body: gate(['refs/heads/main']) });
    expect(uncovered.status).toBe(403);
    expect(uncovered.body.code).toBe('NOT_COVERED');
  });

  it('refuses a validly signed credential whose claims differ from the stored grant', async () => {
    // The broker's own key signs these (as a stolen or misused signing key would): the
    // signature is fine, but repo, refs, expiry or agent are not what the database granted.
    const issued = await issue(['refs/heads/agent/fix-1']);
    const claims = JSON.parse(Buffer.from(issued.credential.credential.split('.')[1], 'base64url').toString());
    const forged: [string, Record<string, unknown>, string][] = [
      ['wider refs', { refs: ['refs/heads/agent/fix-1', 'refs/heads/main'] }, 'refs/heads/main'],
      ['wildcard ref', { refs: ['refs/heads/*'] }, 'refs/heads/main'],
      ['later expiry', { exp: claims.exp + 86_400 }, 'refs/heads/agent/fix-1'],
      ['other repo', { repo: 'homelab/*' }, 'refs/heads/agent/fix-1'],
      ['other agent', { sub: 'other' }, 'refs/heads/agent/fix-1'],
    ];
    for (const [name, change, ref] of forged) {
      const jwt = signGateJwt(h.broker.deps.keys, { ...claims, ...change });
      const res = await verify(jwt, ref);
      expect(res.body, name).toEqual({ valid: false, reason: expect.stringMatching(/does not match the grant/) });
    }
    // The genuine credential still verifies.
    expect((await verify(issued.credential.credential, 'refs/heads/agent/fix-1')).body.valid).toBe(true);
  });

  it('compares with the narrowed grant, not with what was asked', async () => {
    const pending = await h.call('POST', '/jit/request', { token, body: gate(['refs/heads/release/a', 'refs/heads/release/b'], 2) });
    expect(pending.status).toBe(202);
    await decideRequest(h.broker.deps, pending.body.id, { approver: 'local-cli', decision: 'approve', narrowing: { dropRefs: ['refs/heads/release/b'], ttlSeconds: 600 } });
    const claim = await h.call('POST', `/jit/requests/${pending.body.id}/claim`, { token });
    expect(claim.status).toBe(201);
    const jwt = claim.body.credential.credential as string;
    expect((await verify(jwt, 'refs/heads/release/a')).body.valid).toBe(true);
    const claims = JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString());
    const asked = signGateJwt(h.broker.deps.keys, { ...claims, refs: ['refs/heads/release/a', 'refs/heads/release/b'], exp: claims.iat + 1800 });
    expect((await verify(asked, 'refs/heads/release/b')).body).toEqual({ valid: false, reason: expect.stringMatching(/does not match the grant/) });
  });

  it('accepts only the canonical base64url encoding of a signature', async () => {
    const { credential } = (await issue()).credential;
    const [h64, p64, s64] = credential.split('.') as [string, string, string];
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    // 64 bytes take 86 characters; the last one carries 4 unused bits. Flipping one decodes to the same bytes.
    const last = alphabet.indexOf(s64.at(-1)!);
    const flipped = `${s64.slice(0, -1)}${alphabet[last ^ 1]}`;
    expect(Buffer.from(flipped, 'base64url').equals(Buffer.from(s64, 'base64url'))).toBe(true);
    const variants: [string, string][] = [
      ['trailing bits set', `${h64}.${p64}.${flipped}`],
      ['padding', `${h64}.${p64}.${s64}==`],
      ['standard base64 alphabet', `${h64}.${p64}.${Buffer.from(s64, 'base64url').toString('base64').replace(/=+$/, '')}`],
    ];
    for (const [name, jwt] of variants) {
      if (jwt === credential) continue; // the standard alphabet can coincide with base64url
      const res = await verify(jwt, 'refs/heads/agent/fix-1');
      expect(res.status, name).toBe(200);
      expect(res.body, name).toEqual({ valid: false, reason: expect.stringMatching(/malformed|not canonical/) });
    }
    expect((await verify(credential, 'refs/heads/agent/fix-1')).body.valid).toBe(true);
  });

  it.each([
    ['a control character in the ref', 'homelab/app', 'refs/heads/agent/fix-1\u0007'],
    ['a newline in the ref', 'homelab/app', 'refs/heads/agent/fix-1\nrefs/heads/main'],
    ['non-ASCII in the ref', 'homelab/app', 'refs/heads/agent/f\u00efx-1'],
    ['a space in the ref', 'homelab/app', 'refs/heads/agent/fix 1'],
    ['a bidi override in the repo', 'homelab/\u202eppa', 'refs/heads/agent/fix-1'],
  ])('answers 400 to a verify body with %s', async (_name, repo, ref) => {
    const { credential } = (await issue()).credential;
    const res = await h.call('POST', '/gate/verify', { body: { credential, repo, ref } });
    expect(res.status).toBe(400);
    expect(res.body.detail).toMatch(/printable ASCII/);
  });

  it('rejects malformed verify bodies with 400', async () => {
    const res = await h.call('POST', '/gate/verify', { body: { credential: 'x', repo: 'homelab/app' } });
    expect(res.status).toBe(400);
    expect(res.body.detail).toMatch(/ref/);
  });

  it('never stores the JWT', async () => {
    const issued = await issue();
    h.db.pragma('wal_checkpoint(FULL)');
    const { databaseBytes } = await import('../../helpers/broker-harness.ts');
    const db = databaseBytes(h.dir);
    expect(db).toContain(issued.credential.jti);
    expect(db).not.toContain(issued.credential.credential.split('.')[2]);
  });
});
