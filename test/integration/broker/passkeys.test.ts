import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { addApprover, ENROLMENT_TTL_MS, removeApprover } from '../../../src/broker/approvers.ts';
import { decideRequest } from '../../../src/broker/decide.ts';
import type { BrokerDeps } from '../../../src/broker/deps.ts';
import { BrokerError } from '../../../src/broker/errors.ts';
import {
  beginEnrolment,
  beginSignIn,
  beginStepUp,
  CHALLENGE_TTL_MS,
  decideInConsole,
  endSession,
  finishEnrolment,
  finishSignIn,
  relyingPartyOf,
  revokeAllInConsole,
  sessionOf,
  type ConsoleSession,
} from '../../../src/broker/passkeys.ts';
import { PolicyStore } from '../../../src/broker/policy/index.ts';
import { loadConfig } from '../../../src/config/config.ts';
import { createDeps } from '../../../src/create-deps.ts';
import { ManualClock } from '../../../src/lib/clock.ts';
import { hashSecret } from '../../../src/lib/secrets.ts';
import { openPostgresStorage } from '../../../src/storage/postgres/index.ts';
import { openSqliteStorage } from '../../../src/storage/sqlite/index.ts';
import type { RequestRow } from '../../../src/storage/rows.ts';
import type { Storage } from '../../../src/storage/storage.ts';
import { startDevVault } from '../../../src/vault/dev/index.ts';
import { createVaultClient } from '../../../src/vault/node-vault-client.ts';
import { freshPostgresDatabase } from '../../helpers/postgres.ts';
import { SoftAuthenticator } from '../../helpers/soft-authenticator.ts';
import { policyFrom, removePolicyDirs } from '../../unit/policy/helpers.ts';
import { captureLogger, insertRequest } from '../../unit/webhooks/helpers.ts';

/**
 * The passkey verbs (src/broker/passkeys.ts) on both engines: enrolment,
 * sign-in, sessions and step-up, with registrations and assertions made by
 * a software authenticator and verified for real by @simplewebauthn/server.
 */
afterAll(removePolicyDirs);

const ORIGIN = 'http://localhost:8787';
const ROOT_TOKEN = 'hvs.passkeys-test-root-token';
const POLICY = policyFrom(`
agents:
  moltbot:
    sessions: ["hook:jit:moltbot*"]
rules:
  - name: write
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/*"]
    capabilities: [read, update]
    tier: 2
    max_ttl: 30m
  - name: prod
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/prod/*"]
    capabilities: [read, delete]
    tier: 3
    max_ttl: 30m
`);

const engines: [string, () => Promise<Storage>][] = [
  ['sqlite', async () => openSqliteStorage(':memory:')],
  ['postgres', async () => openPostgresStorage(await freshPostgresDatabase('jit_pk'))],
];

describe('relyingPartyOf', () => {
  it("is JIT_PUBLIC_URL's host name and origin; an IP address is refused with one line on what to set", () => {
    expect(relyingPartyOf('https://jit.example.net/')).toEqual({ ok: true, rp: { id: 'jit.example.net', name: 'jit-broker', origin: 'https://jit.example.net' } });
    expect(relyingPartyOf('http://localhost:8787')).toMatchObject({ ok: true, rp: { id: 'localhost', origin: 'http://localhost:8787' } });
    for (const url of ['http://127.0.0.1:8787', 'http://[::1]:8787', 'https://10.0.0.5']) {
      const rp = relyingPartyOf(url);
      expect(rp.ok).toBe(false);
      if (!rp.ok) {
        expect(rp.message).not.toContain('\n');
        expect(rp.message).toMatch(/set JIT_PUBLIC_URL to a host name.*JIT_PUBLIC_URL=http:\/\/localhost:/);
      }
    }
  });
});

describe.each(engines)('passkeys (%s)', (_name, open) => {
  const closers: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  async function start(env: Record<string, string> = {}) {
    const storage = await open();
    closers.push(() => storage.close());
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const devVault = await startDevVault({ host: '127.0.0.1', port: 0, rootToken: ROOT_TOKEN, clock });
    closers.push(() => devVault.close());
    const vault = createVaultClient({ endpoint: devVault.url, token: ROOT_TOKEN }, { clock });
    const config = loadConfig({ JIT_DB: ':memory:', JIT_PUBLIC_URL: ORIGIN, ...env });
    const deps: BrokerDeps = createDeps({ config, storage, vault, policies: new PolicyStore(POLICY), log: captureLogger().log, clock });
    const events = async (event: string) => (await storage.audit.page(0, 1000)).filter((r) => r.event === event).map((r) => ({ actor: r.actor, request_id: r.request_id, data: JSON.parse(r.data) as Record<string, unknown> }));
    const auditText = async () => JSON.stringify(await storage.audit.page(0, 1000));

    /** An approver with a passkey on `authenticator`, signed in (the session enrolment starts). */
    async function enrolled(name: string, authenticator = new SoftAuthenticator({ origin: ORIGIN }), telegramId?: string) {
      const { approver, token } = await addApprover(deps, { name, telegramId });
      const { options } = await beginEnrolment(deps, token);
      const created = await finishEnrolment(deps, token, authenticator.register(options));
      const session = (await sessionOf(deps, created.id))!;
      return { approver, token, authenticator, created, session };
    }

    const pending = async (tier: 2 | 3 = 2, paths: Record<string, string[]> = { [tier === 3 ? 'homelab/data/prod/db' : 'homelab/data/a']: ['read', tier === 3 ? 'delete' : 'update'] }) =>
      insertRequest(storage, {
        status: 'pending',
        tier,
        required_tier: tier,
        decided_by: null,
        decided_at: null,
        claim_expires_at: null,
        created_at: clock.now(),
        approval_expires_at: clock.now() + 600_000,
        rules: JSON.stringify([tier === 3 ? 'prod' : 'write']),
        scope: JSON.stringify({ vault_paths: Object.entries(paths).map(([path, capabilities]) => ({ path, capabilities })) }),
      });
    const status = async (r: RequestRow) => (await storage.requests.get(r.id))!.status;
    const votes = async (r: RequestRow) => (await storage.votes.of(r.id)).map((v) => [v.approver, v.decision]);
    return { deps, storage, clock, events, auditText, enrolled, pending, status, votes };
  }

  const code = (p: Promise<unknown>) => p.then(() => 'resolved', (e: unknown) => (e instanceof BrokerError ? `${e.code}: ${e.message}` : String(e)));

  describe('enrolment', () => {
    it('registers a passkey, uses the link up and starts a session in one transaction; only hashes are stored', async () => {
      const { deps, storage, events, auditText, enrolled } = await start();
      const { approver, token, created, session, authenticator } = await enrolled('alice');
      expect(created).toMatchObject({ approver: { id: approver.id, name: 'alice' }, expiresAt: Date.UTC(2026, 0, 1) + 12 * 3600_000 });
      expect(created.id).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(created.csrf).not.toBe(created.id);
      expect(session).toMatchObject({ idHash: hashSecret(created.id), approver: { id: approver.id }, csrf: created.csrf });
      const [passkey] = await storage.passkeys.of(approver.id);
      expect(passkey).toMatchObject({ id: authenticator.credentials[0]!.id, sign_count: 0, transports: '["internal"]' });
      expect(await events('passkey.registered')).toEqual([{ actor: `approver:${approver.id}`, request_id: null, data: expect.objectContaining({ approver: 'alice', credential_id: passkey!.id }) }]);
      expect(await events('console.signed_in')).toHaveLength(1);
      const text = await auditText();
      for (const secret of [created.id, created.csrf, token]) expect(text).not.toContain(secret);
      // The link works once.
      expect(await code(beginEnrolment(deps, token))).toMatch(/^NOT_FOUND: .*unknown, already used or expired/);
    });

    it('refuses an expired link, a used link, a wrong origin and a foreign challenge, audited; a refused attempt leaves the link usable', async () => {
      const { deps, clock, events, enrolled } = await start();
      // Expired: 15 minutes.
      const late = await addApprover(deps, { name: 'late' });
      const lateOptions = (await beginEnrolment(deps, late.token)).options;
      clock.advance(ENROLMENT_TTL_MS);
      expect(await code(beginEnrolment(deps, late.token))).toMatch(/^NOT_FOUND/);
      expect(await code(finishEnrolment(deps, late.token, new SoftAuthenticator({ origin: ORIGIN }).register(lateOptions)))).toMatch(/^NOT_FOUND/);

      // Used: a second registration through the same link.
      const { token, authenticator } = await enrolled('alice');
      expect(await code(finishEnrolment(deps, token, authenticator.register((await beginEnrolment(deps, (await addApprover(deps, { name: 'other' })).token)).options)))).toMatch(/^NOT_FOUND/);

      // Wrong origin, then a challenge begun for another approver's link: refused, the link stays usable.
      const bob = await addApprover(deps, { name: 'bob' });
      const soft = new SoftAuthenticator({ origin: ORIGIN });
      const options = (await beginEnrolment(deps, bob.token)).options;
      expect(await code(finishEnrolment(deps, bob.token, soft.register(options, { origin: 'https://evil.example' })))).toMatch(/^BAD_REQUEST: the passkey registration does not verify/);
      const carol = await addApprover(deps, { name: 'carol' });
      const carolOptions = (await beginEnrolment(deps, carol.token)).options;
      expect(await code(finishEnrolment(deps, bob.token, soft.register(carolOptions)))).toMatch(/^BAD_REQUEST: this registration answers no registration begun from this link/);
      // The refused attempts used their challenges up: the first options cannot be answered again.
      expect(await code(finishEnrolment(deps, bob.token, soft.register(options)))).toMatch(/^BAD_REQUEST/);
      expect(await code(finishEnrolment(deps, bob.token, soft.register((await beginEnrolment(deps, bob.token)).options)))).toBe('resolved');
      expect(await events('passkey.refused')).toHaveLength(5);
    });
  });

  describe('sign-in and sessions', () => {
    it('signs in with a discoverable passkey; refuses a wrong origin, a replayed or expired assertion, an unknown passkey; audited', async () => {
      const { deps, clock, storage, events, enrolled } = await start();
      const { approver, authenticator } = await enrolled('alice');
      const options = await beginSignIn(deps);
      expect(options.allowCredentials ?? []).toEqual([]);
      expect(options.userVerification).toBe('required');
      const assertion = authenticator.assert(options);
      const session = await finishSignIn(deps, assertion);
      expect(session.approver.id).toBe(approver.id);
      expect((await storage.passkeys.of(approver.id))[0]).toMatchObject({ sign_count: 1, last_used_at: clock.now() });
      // Replayed: its challenge is used up.
      expect(await code(finishSignIn(deps, assertion))).toMatch(/^UNAUTHORIZED: this sign-in answers no sign-in begun here/);
      // Wrong origin.
      expect(await code(finishSignIn(deps, authenticator.assert(await beginSignIn(deps), { origin: 'https://evil.example' })))).toMatch(/^UNAUTHORIZED: the passkey assertion does not verify/);
      // Expired challenge (5 minutes).
      const old = await beginSignIn(deps);
      clock.advance(CHALLENGE_TTL_MS);
      expect(await code(finishSignIn(deps, authenticator.assert(old)))).toMatch(/^UNAUTHORIZED/);
      // A passkey nobody registered.
      const stranger = new SoftAuthenticator({ origin: ORIGIN });
      stranger.register({ ...(await beginEnrolment(deps, (await addApprover(deps, { name: 'zed' })).token)).options });
      expect(await code(finishSignIn(deps, stranger.assert(await beginSignIn(deps))))).toMatch(/^UNAUTHORIZED: this passkey is not registered here/);
      // User presence without verification is not enough.
      authenticator.userVerified = false;
      expect(await code(finishSignIn(deps, authenticator.assert(await beginSignIn(deps))))).toMatch(/^UNAUTHORIZED: the passkey assertion does not verify/);
      expect(await events('console.sign_in_refused')).toHaveLength(5);
      expect((await events('console.signed_in')).length).toBe(2);
    });

    it('times a session out when idle and at its absolute limit; sign-out and approver removal end it at once', async () => {
      const { deps, clock, events, enrolled } = await start({ JIT_CONSOLE_IDLE_TIMEOUT: '10m', JIT_CONSOLE_SESSION_MAX: '1h' });
      const { created, authenticator } = await enrolled('alice');
      clock.advance(9 * 60_000);
      expect(await sessionOf(deps, created.id)).toBeDefined();
      clock.advance(9 * 60_000);
      expect(await sessionOf(deps, created.id)).toBeDefined(); // 18 minutes, kept alive by use
      clock.advance(10 * 60_000);
      expect(await sessionOf(deps, created.id)).toBeUndefined(); // idle 10 minutes
      expect(await sessionOf(deps, created.id)).toBeUndefined();

      const second = await finishSignIn(deps, authenticator.assert(await beginSignIn(deps)));
      for (let i = 0; i < 6; i++) {
        clock.advance(9 * 60_000);
        expect(await sessionOf(deps, second.id)).toBeDefined();
      }
      clock.advance(6 * 60_000);
      expect(await sessionOf(deps, second.id)).toBeUndefined(); // 1 hour old

      const third = await finishSignIn(deps, authenticator.assert(await beginSignIn(deps)));
      await endSession(deps, (await sessionOf(deps, third.id))!);
      expect(await sessionOf(deps, third.id)).toBeUndefined();
      expect(await events('console.signed_out')).toHaveLength(1);

      const fourth = await finishSignIn(deps, authenticator.assert(await beginSignIn(deps)));
      expect(await sessionOf(deps, fourth.id)).toBeDefined();
      await removeApprover(deps, 'alice');
      expect(await sessionOf(deps, fourth.id)).toBeUndefined();
      expect(await code(finishSignIn(deps, authenticator.assert(await beginSignIn(deps))))).toMatch(/^UNAUTHORIZED/);
      expect(await sessionOf(deps, 'not-a-session')).toBeUndefined();
    });
  });

  describe('step-up (JIT_PASSKEY_TIER=2)', () => {
    const stepUp = async (deps: BrokerDeps, s: { session: ConsoleSession; authenticator: SoftAuthenticator }, action: Parameters<typeof beginStepUp>[2]) =>
      s.authenticator.assert(await beginStepUp(deps, s.session, action));

    it('approves with an assertion bound to the request; refuses it missing, replayed, for another request or another narrowing; nothing changes', async () => {
      const { deps, events, enrolled, pending, status, votes } = await start({ JIT_PASSKEY_TIER: '2' });
      const alice = await enrolled('alice');
      const r1 = await pending();
      const r2 = await pending();
      const actor = `approver:${alice.approver.id}`;

      // Missing.
      expect(await decideInConsole(deps, alice.session, r1.id, { decision: 'approve' })).toMatchObject({ outcome: 'refused', code: 'FORBIDDEN', message: expect.stringMatching(/needs a passkey step-up/) });
      // Another request's challenge.
      const forR2 = await stepUp(deps, alice, { kind: 'approve', requestId: r2.id });
      expect(await decideInConsole(deps, alice.session, r1.id, { decision: 'approve', assertion: forR2 })).toMatchObject({ outcome: 'refused', code: 'FORBIDDEN', message: expect.stringMatching(/made for another action/) });
      // Tampered narrowing: the step-up covered a narrower grant than the one submitted, and the other way round.
      const narrowed = await stepUp(deps, alice, { kind: 'approve', requestId: r1.id, narrowing: { dropCapabilities: ['update'] } });
      expect(await decideInConsole(deps, alice.session, r1.id, { decision: 'approve', assertion: narrowed })).toMatchObject({ outcome: 'refused', message: expect.stringMatching(/another action/) });
      const plain = await stepUp(deps, alice, { kind: 'approve', requestId: r1.id });
      expect(await decideInConsole(deps, alice.session, r1.id, { decision: 'approve', narrowing: { ttlSeconds: 60 }, assertion: plain })).toMatchObject({ outcome: 'refused', message: expect.stringMatching(/another action/) });
      expect([await status(r1), await votes(r1)]).toEqual(['pending', []]);
      expect(await events('stepup.refused')).toEqual([
        expect.objectContaining({ actor, request_id: r1.id, data: expect.objectContaining({ missing: true }) }),
        expect.objectContaining({ actor, request_id: r1.id }),
        expect.objectContaining({ actor, request_id: r1.id }),
        expect.objectContaining({ actor, request_id: r1.id }),
      ]);

      // The narrowing the step-up covered, listed in another order: approved, narrowed.
      const good = await stepUp(deps, alice, { kind: 'approve', requestId: r1.id, narrowing: { dropCapabilities: ['update'], ttlSeconds: 60 } });
      expect(await decideInConsole(deps, alice.session, r1.id, { decision: 'approve', narrowing: { ttlSeconds: 60, dropCapabilities: ['update'], dropPaths: [] }, assertion: good })).toMatchObject({
        outcome: 'approved',
        narrowed: true,
        grant: { vault_paths: [{ path: 'homelab/data/a', capabilities: ['read'] }], ttl_seconds: 60 },
      });
      expect(await votes(r1)).toEqual([[actor, 'approve']]);
      // Replayed on the next request: its challenge is gone (and was bound to r1 anyway).
      expect(await decideInConsole(deps, alice.session, r2.id, { decision: 'approve', assertion: good })).toMatchObject({ outcome: 'refused', code: 'FORBIDDEN' });
      // A forged assertion (signed over another challenge than the one it claims): refused.
      const options = await beginStepUp(deps, alice.session, { kind: 'approve', requestId: r2.id });
      const forged = alice.authenticator.assert(options);
      forged.response.signature = alice.authenticator.assert(await beginSignIn(deps)).response.signature;
      expect(await decideInConsole(deps, alice.session, r2.id, { decision: 'approve', assertion: forged })).toMatchObject({ outcome: 'refused', message: expect.stringMatching(/does not verify/) });
      expect([await status(r2), await votes(r2)]).toEqual(['pending', []]);
      // Deny never needs a step-up.
      expect(await decideInConsole(deps, alice.session, r2.id, { decision: 'deny', reason: 'not now' })).toMatchObject({ outcome: 'denied' });
    });

    it('counts one of two racing uses of the same assertion; the challenge is stored only as its hash', async () => {
      const { deps, storage, enrolled, pending, votes } = await start({ JIT_PASSKEY_TIER: '2' });
      const alice = await enrolled('alice');
      const bob = await enrolled('bob');
      const r = await pending();
      const options = await beginStepUp(deps, alice.session, { kind: 'approve', requestId: r.id });
      const raw = await storage.transaction((tx) => tx.challenges.consume(options.challenge, 'step-up', deps.clock.now()));
      expect(raw).toBeUndefined(); // the challenge itself is no key: only its hash is
      const assertion = alice.authenticator.assert(options);
      const outcomes = await Promise.all([1, 2, 3].map(() => decideInConsole(deps, alice.session, r.id, { decision: 'approve', assertion })));
      // The others: refused (the challenge was used up), or already decided when they read the request after the winner committed.
      expect(outcomes.filter((o) => o.outcome === 'approved')).toHaveLength(1);
      expect(outcomes.every((o) => ['approved', 'refused', 'already_decided'].includes(o.outcome))).toBe(true);
      expect(await votes(r)).toEqual([[`approver:${alice.approver.id}`, 'approve']]);
      // Bob, too late: already decided, nothing asked of his passkey.
      expect(await decideInConsole(deps, bob.session, r.id, { decision: 'approve' })).toMatchObject({ outcome: 'already_decided', status: 'approved' });
    });

    it('refuses a Telegram or CLI approval that needs a step-up with the console link, uncounted; their deny counts', async () => {
      const { deps, events, pending, status, votes } = await start({ JIT_PASSKEY_TIER: '2' });
      const r = await pending();
      for (const approver of ['local-cli', 'telegram:111']) {
        expect(await decideRequest(deps, r.id, { approver, decision: 'approve' })).toMatchObject({
          outcome: 'refused',
          code: 'FORBIDDEN',
          message: `approving a tier-2 request needs a passkey step-up (JIT_PASSKEY_TIER=2): approve it in the console, ${ORIGIN}/console/requests/${r.id}`,
        });
      }
      expect([await status(r), await votes(r)]).toEqual(['pending', []]);
      expect((await events('approval.refused')).map((e) => e.data.step_up_required)).toEqual([true, true]);
      expect(await decideRequest(deps, r.id, { approver: 'local-cli', decision: 'deny' })).toMatchObject({ outcome: 'denied' });
      // Unset: Telegram-only set-ups keep working.
      const plain = await start();
      expect(await decideRequest(plain.deps, (await plain.pending(3)).id, { approver: 'local-cli', decision: 'approve' })).toMatchObject({ outcome: 'vote_recorded' });
    });

    it('a tier-3 quorum of two console approvers, each with a step-up; one person cannot count twice', async () => {
      const { deps, enrolled, pending, status, votes } = await start({ JIT_PASSKEY_TIER: '3' });
      const alice = await enrolled('alice', undefined, '111');
      const bob = await enrolled('bob');
      const r = await pending(3);
      expect(await decideInConsole(deps, alice.session, r.id, { decision: 'approve', assertion: await stepUp(deps, alice, { kind: 'approve', requestId: r.id }) })).toMatchObject({ outcome: 'vote_recorded', approvals: 1, needed: 2 });
      // Alice again, from Telegram (her registered id): refused for the step-up, not counted.
      expect(await decideRequest(deps, r.id, { approver: 'telegram:111', decision: 'approve' })).toMatchObject({ outcome: 'already_voted' });
      // Bob without a step-up: refused; with one: approved.
      expect(await decideInConsole(deps, bob.session, r.id, { decision: 'approve' })).toMatchObject({ outcome: 'refused' });
      // Alice's assertion is hers: Bob's session cannot use it.
      expect(await decideInConsole(deps, bob.session, r.id, { decision: 'approve', assertion: await stepUp(deps, alice, { kind: 'approve', requestId: r.id }) })).toMatchObject({ outcome: 'refused' });
      expect(await decideInConsole(deps, bob.session, r.id, { decision: 'approve', assertion: await stepUp(deps, bob, { kind: 'approve', requestId: r.id }) })).toMatchObject({ outcome: 'approved' });
      expect(await status(r)).toBe('approved');
      expect((await votes(r)).map(([v]) => v).sort()).toEqual([`approver:${alice.approver.id}`, `approver:${bob.approver.id}`].sort());
      // A tier-2 request is below JIT_PASSKEY_TIER=3: no step-up.
      expect(await decideInConsole(deps, bob.session, (await pending(2)).id, { decision: 'approve' })).toMatchObject({ outcome: 'approved' });
    });

    it("revoke-all needs a step-up over exactly that action; a removed approver's session and passkeys are gone", async () => {
      const { deps, storage, pending, events, enrolled } = await start({ JIT_PASSKEY_TIER: '2' });
      const alice = await enrolled('alice');
      const approved = await pending();
      expect(await decideInConsole(deps, alice.session, approved.id, { decision: 'approve', assertion: await stepUp(deps, alice, { kind: 'approve', requestId: approved.id }) })).toMatchObject({ outcome: 'approved' });
      const forOther = await stepUp(deps, alice, { kind: 'revoke-all', agentName: 'someone-else' });
      expect(await code(revokeAllInConsole(deps, alice.session, { agentName: 'moltbot', assertion: forOther }))).toMatch(/^FORBIDDEN: .*another action/);
      expect((await storage.requests.get(approved.id))!.status).toBe('approved');
      const outcomes = await revokeAllInConsole(deps, alice.session, { agentName: 'moltbot', assertion: await stepUp(deps, alice, { kind: 'revoke-all', agentName: 'moltbot' }) });
      expect(outcomes.map((o) => [o.request.id, o.result])).toEqual([[approved.id, 'revoked']]);
      expect((await storage.requests.get(approved.id))!.status).toBe('revoked');
      expect((await events('request.revoked'))[0]).toMatchObject({ actor: `approver:${alice.approver.id}` });

      await removeApprover(deps, 'alice');
      expect(await sessionOf(deps, alice.created.id)).toBeUndefined();
      expect(await storage.passkeys.of(alice.approver.id)).toEqual([]);
      // The session object a page still holds decides nothing.
      const r = await pending();
      expect(await code(decideInConsole(deps, alice.session, r.id, { decision: 'deny' }))).toMatch(/^FORBIDDEN: this approver was removed/);
      expect(await code(beginStepUp(deps, alice.session, { kind: 'approve', requestId: r.id }))).toMatch(/^FORBIDDEN/);
    });
  });
});
