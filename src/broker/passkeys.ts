import type { AuthenticationResponseJSON, PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import type { Approver } from './approvers.ts';
import type { BrokerDeps } from './deps.ts';
import type { DecideOutcome } from './decide.ts';
import type { Narrowing } from './narrowing.ts';
import type { RevokeAllOutcome } from './revoke.ts';

/*
 * Passkeys (WebAuthn, @simplewebauthn/server): enrolment through a one-time
 * link, sign-in, console sessions, and step-up (a fresh assertion bound to
 * one action). The console adapter (src/console/) only carries the JSON of
 * the ceremonies between the browser and these verbs; every check is here.
 *
 * CONTRACT between the broker side (this file, storage, decide) and the
 * console adapter. Signatures are fixed; bodies are being written.
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
export function relyingPartyOf(_publicUrl: string): { ok: true; rp: RelyingParty } | { ok: false; message: string } {
  throw new Error('not implemented yet');
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

/** The enrolment link's approver and the registration options; BrokerError NOT_FOUND when the link is unknown, used or expired. */
export declare function beginEnrolment(deps: PasskeyDeps, token: string): Promise<{ approver: Approver; options: PublicKeyCredentialCreationOptionsJSON }>;

/** Verifies the registration, uses the link up and stores the passkey in one transaction, and starts a session; BrokerError (4xx) otherwise, audited. */
export declare function finishEnrolment(deps: PasskeyDeps, token: string, response: RegistrationResponseJSON): Promise<NewSession>;

/** Options for a sign-in (discoverable credentials: no allowCredentials). */
export declare function beginSignIn(deps: PasskeyDeps): Promise<PublicKeyCredentialRequestOptionsJSON>;

/** Verifies a sign-in assertion (challenge single use, sign count) and starts a session; BrokerError UNAUTHORIZED otherwise, audited. */
export declare function finishSignIn(deps: PasskeyDeps, response: AuthenticationResponseJSON): Promise<NewSession>;

/** The session of a cookie value, touched; undefined when unknown, idle too long, too old, or its approver removed. */
export declare function sessionOf(deps: PasskeyDeps, sessionId: string): Promise<ConsoleSession | undefined>;

/** Ends the session (sign-out). */
export declare function endSession(deps: PasskeyDeps, session: ConsoleSession): Promise<void>;

/** Whether approving this request needs a step-up (its required tier is at least JIT_PASSKEY_TIER). */
export declare function approvalNeedsStepUp(config: PasskeyDeps['config'], row: { required_tier: number }): boolean;

/** An action a step-up assertion is bound to: the challenge is a digest of it and a stored single-use nonce. */
export type StepUpAction =
  | { kind: 'approve'; requestId: string; narrowing?: Narrowing | undefined }
  | { kind: 'revoke-all'; agentName?: string | undefined };

/** Options for the step-up assertion of `action` (allowCredentials: the session's approver's passkeys). */
export declare function beginStepUp(deps: PasskeyDeps, session: ConsoleSession, action: StepUpAction): Promise<PublicKeyCredentialRequestOptionsJSON>;

/**
 * A console decision: approve (with an optional narrowing) or deny (with a
 * reason), as `approver:<id>`, through decideIn. When the approval needs a
 * step-up, `assertion` must be a fresh assertion of one of the approver's
 * passkeys over the challenge of exactly this action; the challenge is used
 * up in the deciding transaction. A missing, forged, replayed or mismatched
 * assertion: refused (outcome 'refused', code FORBIDDEN), audited, nothing
 * else changed.
 */
export declare function decideInConsole(
  deps: PasskeyDeps,
  session: ConsoleSession,
  requestId: string,
  input: { decision: 'approve' | 'deny'; reason?: string | undefined; narrowing?: Narrowing | undefined; assertion?: AuthenticationResponseJSON | undefined },
): Promise<DecideOutcome>;

/** Revoke-all from the console: needs a step-up assertion over `{ kind: 'revoke-all', agentName }`. */
export declare function revokeAllInConsole(
  deps: BrokerDeps,
  session: ConsoleSession,
  input: { agentName?: string | undefined; assertion: AuthenticationResponseJSON },
): Promise<RevokeAllOutcome>;
