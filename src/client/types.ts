import type { z } from 'zod';
import type { CredentialRequestBody, GateRequestBody, VaultRequestBody } from '../wire/schemas.ts';

/**
 * The body of `POST /jit/request` as a caller writes it (`ttl` may be
 * `"15m"`); the type comes from the broker's own zod schemas.
 */
export type CredentialRequestInput = z.input<typeof CredentialRequestBody>;
export type VaultRequestInput = z.input<typeof VaultRequestBody>;
export type GateRequestInput = z.input<typeof GateRequestBody>;

// Response shapes are the broker's own zod response schemas (the ones the
// OpenAPI document is generated from), used here as types only.
export type {
  RequestStatus,
  VaultTokenCredential as VaultCredential,
  GatePushCredential as GateCredential,
  IssuedCredential as Credential,
  IssuedResponse as IssuedResult,
  PendingResponse as PendingResult,
  RequestView,
  Tier,
} from '../wire/schemas.ts';
import type { IssuedResponse as IssuedResult, PendingResponse as PendingResult, RequestView } from '../wire/schemas.ts';

/**
 * 200 from `POST /jit/request` when an `Idempotency-Key` was seen before:
 * the first request's current state. The secret is never replayed.
 */
export type ReplayedResult = RequestView & { replayed: true };

export type RequestResult = IssuedResult | PendingResult | ReplayedResult;
