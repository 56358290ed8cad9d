/**
 * The broker's view of Vault. Implemented over node-vault in
 * `node-vault-client.ts`; the development Vault in `dev/` speaks the same
 * HTTP API, so the broker never knows which one it talks to.
 */
export interface VaultClient {
  /** `sys/health`. Resolves for sealed/standby too; rejects only when unreachable. */
  health(): Promise<VaultHealth>;
  /** `PUT sys/policies/acl/:name`. */
  writePolicy(name: string, policy: string): Promise<void>;
  /** `DELETE sys/policies/acl/:name`; a missing policy is not an error. */
  deletePolicy(name: string): Promise<void>;
  /** `LIST sys/policies/acl` (sent as `GET ?list=true`); empty array when none. */
  listPolicies(): Promise<string[]>;
  /** `GET sys/policies/acl/:name`; null when it does not exist. */
  readPolicy(name: string): Promise<string | null>;
  /**
   * `POST auth/token/create-orphan` through `vault.write` (never the typed
   * helper, which would replace the client's own token).
   */
  createOrphanToken(req: CreateTokenRequest): Promise<CreatedToken>;
  /** `POST auth/token/lookup-accessor`; null when the accessor is unknown or revoked. */
  lookupAccessor(accessor: string): Promise<TokenInfo | null>;
  /** `POST auth/token/revoke-accessor`; an unknown accessor is not an error. */
  revokeAccessor(accessor: string): Promise<void>;
  /** Wraps `data` with `sys/wrapping/wrap`; returns the wrapping token info. */
  wrap(data: Record<string, unknown>, ttlSeconds: number): Promise<WrapInfo>;
  /** `sys/wrapping/unwrap` of a wrapping token. */
  unwrap(wrappingToken: string): Promise<Record<string, unknown>>;
  /** Starts AppRole login/renewal when configured; no-op for a static token. */
  start(): Promise<void>;
  /** Stops renewal timers. */
  stop(): void;
}

export interface VaultHealth {
  initialized: boolean;
  sealed: boolean;
  standby: boolean;
  version?: string;
}

export interface CreateTokenRequest {
  policies: string[];
  ttlSeconds: number;
  /** Becomes the token's `explicit_max_ttl` too, so it can never outlive the grant. */
  meta: Record<string, string>;
  displayName: string;
  numUses?: number;
  noDefaultPolicy?: boolean;
  /**
   * Policies written at the same moment as this token is created (Vault
   * resolves a token's policies on every use, so the token may be created
   * first): Vault's "Policy … does not exist" warning for them is expected
   * and not logged.
   */
  policiesBeingWritten?: string[];
}

export interface CreatedToken {
  /** The secret. Never logged, stored or sent anywhere but to the agent. */
  token: string;
  accessor: string;
  policies: string[];
  leaseDurationSeconds: number;
}

export interface TokenInfo {
  accessor: string;
  policies: string[];
  meta: Record<string, string> | null;
  ttlSeconds: number;
  expireTime: string | null;
  orphan: boolean;
  renewable: boolean;
  numUses: number;
}

export interface WrapInfo {
  token: string;
  accessor: string;
  ttlSeconds: number;
  creationTime: string;
}

export interface VaultClientConfig {
  endpoint: string;
  /** Static token; or AppRole credentials below (preferred in production). */
  token?: string;
  roleId?: string;
  secretId?: string;
  /** AppRole mount point, default `approle`. */
  approleMount?: string;
  /** Request timeout in milliseconds (default 5000). */
  timeoutMs?: number;
}
