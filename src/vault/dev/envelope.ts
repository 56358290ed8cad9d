import { randomUUID } from 'node:crypto';
import { setOwn } from '../../lib/own-property.ts';

/**
 * An error answered with Vault's error envelope `{"errors":[…]}`. An empty
 * list is legitimate: Vault answers a missing secret or an empty list with
 * 404 `{"errors":[]}`.
 */
export class VaultHttpError extends Error {
  constructor(
    readonly status: number,
    readonly errors: string[],
    /** An envelope body to send instead of `{errors}` (KV's 404 for a deleted version). */
    readonly body?: unknown,
  ) {
    super(errors[0] ?? `status ${status}`);
  }
}

export const badRequest = (msg: string) => new VaultHttpError(400, [msg]);
export const permissionDenied = () => new VaultHttpError(403, ['permission denied']);
export const unsupportedPath = () => new VaultHttpError(404, ['unsupported path']);
export const unsupportedOperation = () => new VaultHttpError(405, ['unsupported operation']);

/** The `auth` block of a token-issuing response. */
export interface AuthBlock {
  client_token: string;
  accessor: string;
  policies: string[];
  token_policies: string[];
  metadata: Record<string, string> | null;
  lease_duration: number;
  renewable: boolean;
  entity_id: string;
  token_type: 'service';
  orphan: boolean;
  mfa_requirement: null;
  num_uses: number;
}

/** What a route handler returns; `null`/`undefined` means 204 No Content. */
export interface LogicalResponse {
  data?: Record<string, unknown> | null;
  auth?: AuthBlock;
  warnings?: string[];
  /** Defaults to 200. */
  status?: number;
  /** Repeat every `data` key at the top level (sys/capabilities-self, sys/wrapping/wrap). */
  dataAtTopLevel?: boolean;
  /** A body sent as-is, not enveloped (sys/health, sys/wrapping/unwrap). */
  raw?: { status: number; body: unknown };
}

/** Vault's success envelope (`sdk/logical/translate_response.go`). */
export function envelope(resp: LogicalResponse, mountType: string): Record<string, unknown> {
  const body: Record<string, unknown> = {
    request_id: randomUUID(),
    lease_id: '',
    renewable: false,
    lease_duration: 0,
    data: resp.data ?? null,
    wrap_info: null,
    warnings: resp.warnings && resp.warnings.length > 0 ? resp.warnings : null,
    auth: resp.auth ?? null,
    mount_type: mountType,
  };
  if (resp.dataAtTopLevel && resp.data) {
    for (const [k, v] of Object.entries(resp.data)) if (!Object.hasOwn(body, k)) setOwn(body, k, v);
  }
  return body;
}
