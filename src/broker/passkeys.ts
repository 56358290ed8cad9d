import { createHash, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { ConfigError, type Config } from '../config/config.ts';
import { canonicalJson } from '../lib/canonical-json.ts';
import { hashSecret, randomToken } from '../lib/secrets.ts';
import { StorageUniqueError } from '../storage/errors.ts';
import type { ApproverRow, ChallengePurpose, PasskeyRow } from '../storage/rows.ts';
import type { Transaction } from '../storage/storage.ts';
import { approverVoter, consumeEnrolmentIn, enrolmentApprover, type Approver } from './approvers.ts';
import type { AuditEntry } from './audit.ts';
import type { BrokerDeps } from './deps.ts';
import { approvalNeedsStepUp, decideIn, type DecideOutcome } from './decide.ts';
import { BrokerError, type ErrorCode } from './errors.ts';
import { isEmptyNarrowing, type Narrowing } from './narrowing.ts';
import { revokeAllLive, type RevokeAllOutcome } from './revoke.ts';

export { approvalNeedsStepUp } from './decide.ts';

/*
 * Passkeys (WebAuthn, @simplewebauthn/server): enrolment through a one-time
 * link, sign-in, console sessions, and step-up (a fresh assertion bound to
 * one action). The console adapter (src/console/) only carries the JSON of
 * the ceremonies between the browser and these verbs; every check is here
 * (docs/architecture.md, "Passkeys" and "Step-up").
 */

export type PasskeyDeps = Pick<BrokerDeps, 'config' | 'storage' | 'audit' | 'agents' | 'clock' | 'ids' | 'events' | 'log' | 'policies'>;

/** The relying party: JIT_PUBLIC_URL's host name and origin. */
export interface RelyingParty {
  id: string;
  name: string;
  origin: string;
}

/**
 * The relying party of a public URL, or the one line an operator needs when
 * it cannot be one (an IP address: WebAuthn refuses it).
 */
export function relyingPartyOf(publicUrl: string): { ok: true; rp: RelyingParty } | { ok: false; message: string } {
  let url: URL;
  try {
    url = new URL(publicUrl);
  } catch {
    return { ok: false, message: `JIT_PUBLIC_URL (${publicUrl}) is not a URL; set it to the console's address with a host name, e.g. JIT_PUBLIC_URL=http://localhost:8787` };
  }
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host) !== 0) {
    return {
      ok: false,
      message: `passkeys need a host name, and JIT_PUBLIC_URL (${url.origin}) has the IP address ${host}: set JIT_PUBLIC_URL to a host name that reaches this broker, e.g. JIT_PUBLIC_URL=http://localhost:${url.port || (url.protocol === 'https:' ? 443 : 80)}`,
    };
  }
  return { ok: true, rp: { id: url.hostname, name: RP_NAME, origin: url.origin } };
}

/**
 * The service refuses to start with JIT_PASSKEY_TIER set when its public URL
 * cannot be the passkeys' relying party ({@link relyingPartyOf}: an IP
 * address). Telegram and `jit approve` send such approvals to the console,
 * which is then off: those requests could never be approved anywhere.
 * (Checked at the service's start, not in loadConfig: a CLI shell may carry
 * JIT_PASSKEY_TIER without JIT_PUBLIC_URL and take the service's recorded URL.)
 */
export function requireStepUpReachable(config: Pick<Config, 'passkeyTier' | 'publicUrl'>): void {
  if (config.passkeyTier === undefined) return;
  const rp = relyingPartyOf(config.publicUrl);
  if (rp.ok) return;
  throw new ConfigError('JIT_PASSKEY_TIER', `approvals of tier ${config.passkeyTier} and above need a passkey step-up in the console, but ${rp.message}; or unset JIT_PASSKEY_TIER`);
}

/** A session as the console sees it (a valid one: not idle, not past its absolute timeout, approver not removed). */
export interface ConsoleSession {
  /** The hash of the session id (what storage keys it by); never the id itself. */
  idHash: string;
  approver: Approver;
  /** The CSRF token of this session (derived from the session id, one way). */
  csrf: string;
  createdAt: number;
  lastSeenAt: number;
}

/** A session just started: `id` goes into the cookie (and nowhere else), once. */
export interface NewSession {
  id: string;
  csrf: string;
  approver: Approver;
  /** The absolute timeout. */
  expiresAt: number;
}

/** The relying party's display name in the browser's passkey dialogs. */
const RP_NAME = 'jit-broker';
/** A WebAuthn ceremony's challenge works for 5 minutes, once. */
export const CHALLENGE_TTL_MS = 5 * 60 * 1000;
/** 32 random bytes, base64url: a session id (the cookie's value). */
const SESSION_ID = /^[A-Za-z0-9_-]{43}$/;
/** A session's last use is written at most this often (every console request reads it). */
const TOUCH_EVERY_MS = 15_000;

/*
 * User verification: 'required' everywhere. A passkey is the approver's
 * proof that they, not someone holding their unlocked phone or a security
 * key left in a laptop, approve; user presence alone (a touch) proves no
 * person. Every platform passkey (phone, laptop, password manager) verifies
 * the user anyway, so 'required' costs those nothing, and refuses only
 * bare security keys without a PIN.
 */
const USER_VERIFICATION = 'required' as const;

/** A refusal inside a ceremony's transaction: rolled back, then audited (and its challenge used up) on its own. */
class Refusal extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly actor: string,
    readonly data: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

function relyingParty(deps: PasskeyDeps): RelyingParty {
  const rp = relyingPartyOf(deps.config.publicUrl);
  if (!rp.ok) throw new BrokerError('UNAVAILABLE', rp.message);
  return rp.rp;
}

const toApprover = (r: ApproverRow): Approver => ({ id: r.id, name: r.name, telegramId: r.telegram_id, createdAt: r.created_at });
const b64url = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64url');
const sha256 = (data: string) => createHash('sha256').update(data, 'utf8').digest();

/** The CSRF token of a session id: one way, so a page's token never gives the cookie away. */
const csrfOf = (sessionId: string) => b64url(sha256(`csrf:${sessionId}`));

/** The challenge a ceremony's response carries (clientDataJSON.challenge), or undefined when it carries none. */
function challengeOf(response: { response?: { clientDataJSON?: unknown } } | undefined): string | undefined {
  try {
    const clientData = response?.response?.clientDataJSON;
    if (typeof clientData !== 'string' || clientData.length > 16_384) return undefined;
    const parsed = JSON.parse(Buffer.from(clientData, 'base64url').toString('utf8')) as { challenge?: unknown };
    return typeof parsed.challenge === 'string' && /^[A-Za-z0-9_-]{16,128}$/.test(parsed.challenge) ? parsed.challenge : undefined;
  } catch {
    return undefined;
  }
}

async function storeChallenge(deps: PasskeyDeps, challenge: string, purpose: ChallengePurpose, approverId: string | null, actionHash: string | null): Promise<void> {
  const now = deps.clock.now();
  await deps.storage.challenges.insert({ challenge_hash: hashSecret(challenge), purpose, approver_id: approverId, action_hash: actionHash, created_at: now, expires_at: now + CHALLENGE_TTL_MS });
}

/**
 * Runs a ceremony's transaction. A {@link Refusal} rolls it back (nothing it
 * did stays: an enrolment link stays usable), then uses the challenge up
 * and audits the refusal in a transaction of its own, and comes back as
 * the refusal.
 */
async function ceremony<T>(
  deps: PasskeyDeps,
  challenge: string | undefined,
  purpose: ChallengePurpose,
  refused: { event: AuditEntry['event']; requestId?: string | undefined },
  fn: (tx: Transaction, now: number) => Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false; refusal: Refusal }> {
  try {
    return { ok: true, value: await deps.storage.transaction((tx) => fn(tx, deps.clock.now())) };
  } catch (err) {
    if (!(err instanceof Refusal)) throw err;
    const now = deps.clock.now();
    await deps.storage.transaction(async (tx) => {
      if (challenge !== undefined) await tx.challenges.consume(hashSecret(challenge), purpose, now);
      await deps.audit.append(tx, { event: refused.event, actor: err.actor, requestId: refused.requestId, data: { reason: err.message, ...err.data } }, now);
    });
    return { ok: false, refusal: err };
  }
}

/** Verifies an assertion of one of `approverId`'s passkeys (any approver's when undefined) over `challenge` and records its use (sign count, conditional). */
async function useAssertion(
  tx: Transaction,
  rp: RelyingParty,
  response: AuthenticationResponseJSON,
  challenge: string,
  now: number,
  approverId: string | undefined,
  actor: string,
): Promise<PasskeyRow> {
  const passkey = typeof response.id === 'string' ? await tx.passkeys.get(response.id) : undefined;
  if (!passkey || (approverId !== undefined && passkey.approver_id !== approverId)) {
    throw new Refusal('UNAUTHORIZED', approverId === undefined ? 'this passkey is not registered here (or its approver was removed)' : "this passkey is not one of the signed-in approver's", actor);
  }
  let verified: Awaited<ReturnType<typeof verifyAuthenticationResponse>>;
  try {
    verified = await verifyAuthenticationResponse({
      response,
      expectedChallenge: challenge,
      expectedOrigin: rp.origin,
      expectedRPID: rp.id,
      credential: { id: passkey.id, publicKey: Buffer.from(passkey.public_key, 'base64url'), counter: passkey.sign_count, transports: JSON.parse(passkey.transports) as string[] },
      requireUserVerification: true,
    });
  } catch (err) {
    throw new Refusal('UNAUTHORIZED', `the passkey assertion does not verify: ${(err as Error).message}`, actor, { credential_id: passkey.id });
  }
  if (!verified.verified) throw new Refusal('UNAUTHORIZED', 'the passkey assertion does not verify', actor, { credential_id: passkey.id });
  // Conditional on the count read above: a replayed or cloned authenticator racing this one loses here.
  if (!(await tx.passkeys.use(passkey.id, passkey.sign_count, verified.authenticationInfo.newCounter, now))) {
    throw new Refusal('UNAUTHORIZED', "the passkey's signature counter moved meanwhile (a replayed assertion or a cloned authenticator)", actor, { credential_id: passkey.id });
  }
  return passkey;
}

/** Starts a session inside the caller's transaction; the id is returned once, stored as a hash. */
async function startSession(deps: PasskeyDeps, tx: Transaction, approver: Approver, now: number): Promise<NewSession> {
  const id = randomToken(32);
  await tx.consoleSessions.insert({ id_hash: hashSecret(id), approver_id: approver.id, created_at: now, last_seen_at: now });
  return { id, csrf: csrfOf(id), approver, expiresAt: now + deps.config.consoleSessionMaxSeconds * 1000 };
}

/** The enrolment link's approver and the registration options; BrokerError NOT_FOUND when the link is unknown, used or expired. */
export async function beginEnrolment(deps: PasskeyDeps, token: string): Promise<{ approver: Approver; options: PublicKeyCredentialCreationOptionsJSON }> {
  const rp = relyingParty(deps);
  const approver = await enrolmentApprover(deps, token);
  if (!approver) throw new BrokerError('NOT_FOUND', 'this enrolment link is unknown, already used or expired (links work once, for 15 minutes); ask the operator for a new one');
  const existing = await deps.storage.passkeys.of(approver.id);
  const options = await generateRegistrationOptions({
    rpName: rp.name,
    rpID: rp.id,
    userName: approver.name,
    userID: new Uint8Array(Buffer.from(approver.id, 'utf8')),
    challenge: new Uint8Array(randomBytes(32)),
    timeout: CHALLENGE_TTL_MS,
    attestationType: 'none',
    excludeCredentials: existing.map((p) => ({ id: p.id, transports: JSON.parse(p.transports) as string[] })),
    // Discoverable: sign-in asks for no user name.
    authenticatorSelection: { residentKey: 'required', requireResidentKey: true, userVerification: USER_VERIFICATION },
  });
  await storeChallenge(deps, options.challenge, 'enrol', approver.id, null);
  return { approver, options };
}

/** Verifies the registration, uses the link up and stores the passkey in one transaction, and starts a session; BrokerError (4xx) otherwise, audited. */
export async function finishEnrolment(deps: PasskeyDeps, token: string, response: RegistrationResponseJSON): Promise<NewSession> {
  const rp = relyingParty(deps);
  const challenge = challengeOf(response);
  const result = await ceremony(deps, challenge, 'enrol', { event: 'passkey.refused' }, async (tx, now) => {
    const approver = await consumeEnrolmentIn(tx, now, token);
    if (!approver) throw new Refusal('NOT_FOUND', 'this enrolment link is unknown, already used or expired (links work once, for 15 minutes); ask the operator for a new one', 'console');
    const actor = approverVoter(approver.id);
    const stored = challenge === undefined ? undefined : await tx.challenges.consume(hashSecret(challenge), 'enrol', now);
    if (!stored || stored.approver_id !== approver.id) throw new Refusal('BAD_REQUEST', 'this registration answers no registration begun from this link in the last 5 minutes; start again', actor);
    let verified: Awaited<ReturnType<typeof verifyRegistrationResponse>>;
    try {
      verified = await verifyRegistrationResponse({ response, expectedChallenge: challenge!, expectedOrigin: rp.origin, expectedRPID: rp.id, requireUserVerification: true });
    } catch (err) {
      throw new Refusal('BAD_REQUEST', `the passkey registration does not verify: ${(err as Error).message}`, actor);
    }
    if (!verified.verified) throw new Refusal('BAD_REQUEST', 'the passkey registration does not verify', actor);
    const { credential, aaguid, credentialBackedUp } = verified.registrationInfo;
    const transports = (response.response?.transports ?? credential.transports ?? []).filter((t) => typeof t === 'string');
    try {
      await tx.passkeys.insert({ id: credential.id, approver_id: approver.id, public_key: b64url(credential.publicKey), sign_count: credential.counter, transports: JSON.stringify(transports), created_at: now, last_used_at: null });
    } catch (err) {
      if (err instanceof StorageUniqueError) throw new Refusal('CONFLICT', 'this passkey is registered already', actor, { credential_id: credential.id });
      throw err;
    }
    const session = await startSession(deps, tx, approver, now);
    await deps.audit.append(tx, { event: 'passkey.registered', actor, data: { approver: approver.name, approver_id: approver.id, credential_id: credential.id, aaguid, backed_up: credentialBackedUp } }, now);
    await deps.audit.append(tx, { event: 'console.signed_in', actor, data: { approver: approver.name, approver_id: approver.id, credential_id: credential.id, via: 'enrolment' } }, now);
    return session;
  });
  if (!result.ok) throw new BrokerError(result.refusal.code, result.refusal.message);
  return result.value;
}

/** Options for a sign-in (discoverable credentials: no allowCredentials). */
export async function beginSignIn(deps: PasskeyDeps): Promise<PublicKeyCredentialRequestOptionsJSON> {
  const rp = relyingParty(deps);
  const options = await generateAuthenticationOptions({ rpID: rp.id, challenge: new Uint8Array(randomBytes(32)), timeout: CHALLENGE_TTL_MS, userVerification: USER_VERIFICATION });
  await storeChallenge(deps, options.challenge, 'sign-in', null, null);
  return options;
}

/** Verifies a sign-in assertion (challenge single use, sign count) and starts a session; BrokerError UNAUTHORIZED otherwise, audited. */
export async function finishSignIn(deps: PasskeyDeps, response: AuthenticationResponseJSON): Promise<NewSession> {
  const rp = relyingParty(deps);
  const challenge = challengeOf(response);
  const result = await ceremony(deps, challenge, 'sign-in', { event: 'console.sign_in_refused' }, async (tx, now) => {
    const stored = challenge === undefined ? undefined : await tx.challenges.consume(hashSecret(challenge), 'sign-in', now);
    if (!stored) throw new Refusal('UNAUTHORIZED', 'this sign-in answers no sign-in begun here in the last 5 minutes (or it was used already); sign in again', 'console');
    const passkey = await useAssertion(tx, rp, response, challenge!, now, undefined, 'console');
    const row = await tx.approvers.get(passkey.approver_id);
    if (!row || row.removed_at !== null) throw new Refusal('UNAUTHORIZED', 'this approver was removed', approverVoter(passkey.approver_id));
    const approver = toApprover(row);
    const session = await startSession(deps, tx, approver, now);
    await deps.audit.append(tx, { event: 'console.signed_in', actor: approverVoter(approver.id), data: { approver: approver.name, approver_id: approver.id, credential_id: passkey.id } }, now);
    return session;
  });
  if (!result.ok) throw new BrokerError('UNAUTHORIZED', result.refusal.message);
  return result.value;
}

/**
 * The session of a cookie value; undefined when unknown, idle too long, too
 * old, or its approver removed. Touched (its idle timeout restarts) unless
 * `opts.touch` is false: what a page does on its own (the live list's event
 * stream and reloads) is no sign that a person is there.
 */
export async function sessionOf(deps: PasskeyDeps, sessionId: string, opts: { touch?: boolean } = {}): Promise<ConsoleSession | undefined> {
  if (!SESSION_ID.test(sessionId)) return undefined;
  const session = await sessionByHash(deps, hashSecret(sessionId), opts);
  return session && { ...session, csrf: csrfOf(sessionId) };
}

/**
 * Whether a session the console already holds still stands, by the same
 * rules as {@link sessionOf} (not idle, not past its absolute timeout,
 * approver not removed), without touching it: an open event stream asks
 * before each event.
 */
export async function sessionStillValid(deps: PasskeyDeps, session: Pick<ConsoleSession, 'idHash'>): Promise<boolean> {
  return (await sessionByHash(deps, session.idHash, { touch: false })) !== undefined;
}

/** {@link sessionOf} by the session id's hash (everything but the CSRF token, which only the id gives). */
async function sessionByHash(deps: PasskeyDeps, idHash: string, opts: { touch?: boolean }): Promise<Omit<ConsoleSession, 'csrf'> | undefined> {
  const { storage, clock, config } = deps;
  const row = await storage.consoleSessions.get(idHash);
  if (!row) return undefined;
  const now = clock.now();
  if (now - row.last_seen_at >= config.consoleIdleTimeoutSeconds * 1000 || now - row.created_at >= config.consoleSessionMaxSeconds * 1000) {
    await storage.consoleSessions.delete(idHash);
    return undefined;
  }
  const approver = await storage.approvers.get(row.approver_id);
  if (!approver || approver.removed_at !== null) return undefined;
  let lastSeenAt = row.last_seen_at;
  if (opts.touch !== false && now - row.last_seen_at >= TOUCH_EVERY_MS) {
    // Gone meanwhile (signed out, approver removed): no session.
    if (!(await storage.consoleSessions.touch(idHash, now))) return undefined;
    lastSeenAt = now;
  }
  return { idHash, approver: toApprover(approver), createdAt: row.created_at, lastSeenAt };
}

/** Ends the session (sign-out). */
export async function endSession(deps: PasskeyDeps, session: ConsoleSession): Promise<void> {
  const now = deps.clock.now();
  await deps.storage.transaction(async (tx) => {
    if (!(await tx.consoleSessions.delete(session.idHash))) return;
    await deps.audit.append(tx, { event: 'console.signed_out', actor: approverVoter(session.approver.id), data: { approver: session.approver.name, approver_id: session.approver.id } }, now);
  });
}

/** An action a step-up assertion is bound to: the challenge is a digest of it and a stored single-use nonce. */
export type StepUpAction =
  | { kind: 'approve'; requestId: string; narrowing?: Narrowing | undefined }
  | { kind: 'revoke-all'; agentName?: string | undefined };

/** One canonical form per meaning: the same narrowing however the page lists or leaves out its parts. */
function canonicalAction(action: StepUpAction): Record<string, unknown> {
  if (action.kind === 'revoke-all') return { kind: 'revoke-all', agentName: action.agentName ?? null };
  const n = action.narrowing;
  const list = (v: readonly string[] | undefined) => (v && v.length ? [...new Set(v)].sort() : undefined);
  return {
    kind: 'approve',
    decision: 'approve',
    requestId: action.requestId,
    narrowing: isEmptyNarrowing(n)
      ? null
      : { ttlSeconds: n!.ttlSeconds, dropCapabilities: list(n!.dropCapabilities), dropPaths: list(n!.dropPaths), dropRefs: list(n!.dropRefs) },
  };
}

/** The hash stored beside a step-up challenge: the action it was made for. */
const actionHashOf = (action: StepUpAction) => sha256(canonicalJson(canonicalAction(action))).toString('hex');

/**
 * Options for the step-up assertion of `action` (allowCredentials: the session's approver's passkeys).
 * The challenge is sha256(canonical JSON of { nonce, action }), the nonce 32 fresh random bytes:
 * what the authenticator signs commits to the request, the decision and the narrowed scope.
 */
export async function beginStepUp(deps: PasskeyDeps, session: ConsoleSession, action: StepUpAction): Promise<PublicKeyCredentialRequestOptionsJSON> {
  const rp = relyingParty(deps);
  const passkeys = await deps.storage.passkeys.of(session.approver.id);
  if (passkeys.length === 0) throw new BrokerError('FORBIDDEN', 'you have no passkey registered (any more); ask the operator for a new enrolment link');
  const nonce = randomBytes(32).toString('base64url');
  const challenge = sha256(canonicalJson({ nonce, action: canonicalAction(action) }));
  const options = await generateAuthenticationOptions({
    rpID: rp.id,
    challenge: new Uint8Array(challenge),
    timeout: CHALLENGE_TTL_MS,
    userVerification: USER_VERIFICATION,
    allowCredentials: passkeys.map((p) => ({ id: p.id, transports: JSON.parse(p.transports) as string[] })),
  });
  // The nonce itself is kept nowhere: the stored hash of the challenge (with the action's hash) is all a verification needs.
  await storeChallenge(deps, options.challenge, 'step-up', session.approver.id, actionHashOf(action));
  return options;
}

/** Verifies a step-up assertion over `action` for the session's approver and uses its challenge up, inside the caller's transaction; a {@link Refusal} otherwise. */
async function useStepUp(deps: PasskeyDeps, tx: Transaction, rp: RelyingParty, session: ConsoleSession, action: StepUpAction, assertion: AuthenticationResponseJSON | undefined, challenge: string | undefined, now: number): Promise<void> {
  const actor = approverVoter(session.approver.id);
  if (!assertion) throw new Refusal('FORBIDDEN', `${action.kind === 'approve' ? 'approving this request' : 'revoking every credential'} needs a passkey step-up; confirm it with your passkey`, actor, { missing: true });
  const stored = challenge === undefined ? undefined : await tx.challenges.consume(hashSecret(challenge), 'step-up', now);
  if (!stored || stored.approver_id !== session.approver.id) throw new Refusal('FORBIDDEN', 'this passkey assertion answers no step-up begun by you in the last 5 minutes (or it was used already); try again', actor);
  if (stored.action_hash !== actionHashOf(action)) {
    throw new Refusal('FORBIDDEN', 'this passkey assertion was made for another action (another request, decision or narrowing); nothing was done, try again', actor);
  }
  try {
    await useAssertion(tx, rp, assertion, challenge!, now, session.approver.id, actor);
  } catch (err) {
    if (err instanceof Refusal) throw new Refusal('FORBIDDEN', err.message, err.actor, err.data);
    throw err;
  }
}

/**
 * A console decision: approve (with an optional narrowing) or deny (with a
 * reason), as `approver:<id>`, through decideIn. When the approval needs a
 * step-up, `assertion` must be a fresh assertion of one of the approver's
 * passkeys over the challenge of exactly this action; the challenge is used
 * up in the deciding transaction. A missing, forged, replayed or mismatched
 * assertion: refused (outcome 'refused', code FORBIDDEN), audited, nothing
 * else changed.
 */
export async function decideInConsole(
  deps: PasskeyDeps,
  session: ConsoleSession,
  requestId: string,
  input: { decision: 'approve' | 'deny'; reason?: string | undefined; narrowing?: Narrowing | undefined; assertion?: AuthenticationResponseJSON | undefined },
): Promise<DecideOutcome> {
  const decision = { approver: approverVoter(session.approver.id), decision: input.decision, reason: input.reason, narrowing: input.narrowing };
  const request = await deps.storage.requests.get(requestId);
  if (!request) throw new BrokerError('NOT_FOUND', `request ${requestId} not found`);
  // Deny needs no step-up; neither does a request already decided (decideIn answers so, changing nothing).
  if (input.decision === 'deny' || request.status !== 'pending' || !approvalNeedsStepUp(deps.config, request)) {
    return deps.storage.transaction((tx) => decideIn(tx, deps, requestId, decision));
  }
  const rp = relyingParty(deps);
  const action: StepUpAction = { kind: 'approve', requestId, narrowing: input.narrowing };
  const challenge = challengeOf(input.assertion);
  const result = await ceremony(deps, challenge, 'step-up', { event: 'stepup.refused', requestId }, async (tx, now) => {
    // The request's tier is read again by decideIn; a step-up proven for it is proof enough whatever it reads.
    await useStepUp(deps, tx, rp, session, action, input.assertion, challenge, now);
    return decideIn(tx, deps, requestId, { ...decision, stepUp: true });
  });
  if (result.ok) return result.value;
  return { outcome: 'refused', request: (await deps.storage.requests.get(requestId)) ?? request, code: 'FORBIDDEN', message: result.refusal.message };
}

/** Revoke-all from the console: needs a step-up assertion over `{ kind: 'revoke-all', agentName }`. */
export async function revokeAllInConsole(
  deps: BrokerDeps,
  session: ConsoleSession,
  input: { agentName?: string | undefined; assertion: AuthenticationResponseJSON },
): Promise<RevokeAllOutcome[]> {
  const rp = relyingParty(deps);
  const action: StepUpAction = { kind: 'revoke-all', agentName: input.agentName };
  const challenge = challengeOf(input.assertion);
  // The step-up is used up first, on its own: revoke-all then runs one request at a time (revoke.ts), each with its Vault half.
  const result = await ceremony(deps, challenge, 'step-up', { event: 'stepup.refused' }, (tx, now) => useStepUp(deps, tx, rp, session, action, input.assertion, challenge, now));
  if (!result.ok) throw new BrokerError('FORBIDDEN', result.refusal.message);
  const who = input.agentName ? `agent "${input.agentName}"'s` : 'every';
  return revokeAllLive(deps, approverVoter(session.approver.id), `revoke-all from the console by ${session.approver.name} (${who} live credentials)`, input.agentName);
}

/**
 * Deletes what no ceremony or session can use any more: expired challenges
 * (used ones are deleted by their use) and sessions idle or past their
 * absolute timeout. Run by the lifecycle sweep; each is one statement
 * through an index.
 */
export async function prunePasskeyState(deps: Pick<PasskeyDeps, 'storage' | 'config'>, now: number): Promise<void> {
  const { storage, config } = deps;
  await storage.challenges.prune(now);
  await storage.consoleSessions.prune(now - config.consoleIdleTimeoutSeconds * 1000, now - config.consoleSessionMaxSeconds * 1000);
}
