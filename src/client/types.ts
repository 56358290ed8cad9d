import type { z } from 'zod';
import type { CredentialRequestBody, GateRequestBody, VaultRequestBody } from '../broker/schemas.ts';

/**
 * The body of `POST /jit/request` as a caller writes it (`ttl` may be
 * `"15m"`); the type comes from the broker's own zod schemas.
 */
export type CredentialRequestInput = z.input<typeof CredentialRequestBody>;
export type VaultRequestInput = z.input<typeof VaultRequestBody>;
export type GateRequestInput = z.input<typeof GateRequestBody>;

export type { RequestStatus } from '../broker/repository.ts';
export type { Tier } from '../broker/policy/types.ts';
export type { VaultTokenCredential as VaultCredential } from '../broker/mint-credential.ts';
export type { GatePushCredential as GateCredential } from '../broker/gate-credential.ts';
import type { RequestStatus } from '../broker/repository.ts';
import type { Tier } from '../broker/policy/types.ts';
import type { VaultTokenCredential as VaultCredential } from '../broker/mint-credential.ts';
import type { GatePushCredential as GateCredential } from '../broker/gate-credential.ts';

export type Credential = VaultCredential | GateCredential;

/** 201 from `POST /jit/request` (tier 1 issued at once) and from claim. Holds the secret: shown once. */
export interface IssuedResult {
  id: string;
  status: 'issued';
  tier: Tier;
  required_tier: Tier;
  resource: 'vault' | 'gate';
  expires_at: string;
  credential: Credential;
}

/** 202 from `POST /jit/request`: waiting for approval until `approval_expires_at`. */
export interface PendingResult {
  id: string;
  status: 'pending';
  tier: Tier;
  required_tier: Tier;
  approval_expires_at: string;
}

/** `GET /jit/requests/:id`: the request as the agent may see it. Never a secret. */
export interface RequestView {
  id: string;
  status: RequestStatus;
  resource: 'vault' | 'gate';
  agent: string;
  tier: Tier;
  required_tier: Tier;
  reason: string;
  vault_paths?: { path: string; capabilities: string[] }[];
  repo?: string;
  refs?: string[];
  ttl_seconds: number;
  session_key: string | null;
  rules: string[];
  created_at: string;
  approval_expires_at: string | null;
  claim_expires_at: string | null;
  decision: { approver: string; decided_at: string | null; reason: string | null } | null;
  credential: {
    type: Credential['type'];
    accessor?: string;
    jti?: string;
    state: 'issuing' | 'live' | 'revoking' | 'ended';
    issued_at: string | null;
    expires_at: string | null;
    ended_at: string | null;
  } | null;
  failure?: string;
}

/**
 * 200 from `POST /jit/request` when an `Idempotency-Key` was seen before:
 * the first request's current state. The secret is never replayed.
 */
export type ReplayedResult = RequestView & { replayed: true };

export type RequestResult = IssuedResult | PendingResult | ReplayedResult;
