import type { Clock } from '../../lib/clock.ts';
import { Acl } from './acl.ts';
import type { AuthBlock } from './envelope.ts';
import { KvStore } from './kv.ts';
import { DEFAULT_POLICY_TEXT, RESPONSE_WRAPPING_POLICY, parsePolicy } from './policy.ts';
import type { ParsedPolicy } from './policy.ts';
import { TokenStore } from './token-store.ts';
import type { TokenEntry, TtlLimits } from './token-store.ts';

/** The AppRole the development Vault accepts at `auth/approle/login`. */
export interface DevAppRole {
  roleId: string;
  secretId: string;
  policies: string[];
  tokenTtlSeconds: number;
  /** Hard limit on the token's lifetime across renewals (default: the system max). */
  tokenMaxTtlSeconds?: number;
  /** Reported as `metadata.role_name` (default `jit-broker`). */
  roleName?: string;
}

/** One request as the development Vault saw it (no token, no body). */
export interface DevRequestRecord {
  at: number;
  method: string;
  path: string;
  operation: string | null;
  status: number;
  /** Accessor of the calling token, when the request carried a valid one. */
  accessor: string | null;
}

const MAX_REQUEST_RECORDS = 1000;

/** Everything the development Vault holds in memory. */
export class DevVaultState {
  readonly tokens: TokenStore;
  readonly kv: KvStore;
  private readonly policies = new Map<string, ParsedPolicy>();
  private readonly records: DevRequestRecord[] = [];
  sealed = false;

  constructor(
    readonly clock: Clock,
    limits: TtlLimits,
    readonly approle: DevAppRole | undefined,
  ) {
    this.tokens = new TokenStore(clock, limits);
    this.kv = new KvStore(clock);
    this.policies.set('default', parsePolicy('default', DEFAULT_POLICY_TEXT));
  }

  /** Parses and stores an ACL policy; throws PolicyParseError. */
  putPolicy(name: string, text: string): void {
    this.policies.set(name, parsePolicy(name, text));
  }

  getPolicy(name: string): ParsedPolicy | undefined {
    return this.policies.get(name);
  }

  deletePolicy(name: string): void {
    this.policies.delete(name);
  }

  /** Stored policy names, sorted (without the virtual `root`). */
  policyNames(): string[] {
    return [...this.policies.keys()].sort();
  }

  /**
   * The token's ACL, built from its policies as they are now: a policy
   * deleted since the token was created simply contributes nothing.
   */
  aclFor(token: TokenEntry): Acl {
    const parsed: ParsedPolicy[] = [];
    for (const name of token.policies) {
      const p = name === 'response-wrapping' ? RESPONSE_WRAPPING_POLICY : this.policies.get(name);
      if (p) parsed.push(p);
    }
    return Acl.fromPolicies(token.policies, parsed);
  }

  /** The `auth` block Vault returns when it issues or renews a token. */
  authBlock(token: TokenEntry, leaseDuration: number, hideToken = false): AuthBlock {
    return {
      client_token: hideToken ? '' : token.id,
      accessor: token.accessor,
      policies: [...token.policies],
      token_policies: [...token.policies],
      metadata: token.meta ? { ...token.meta } : null,
      lease_duration: leaseDuration,
      renewable: token.renewable && token.expireMs !== null,
      entity_id: '',
      token_type: 'service',
      orphan: token.parentHash === null,
      mfa_requirement: null,
      num_uses: token.numUses,
    };
  }

  record(rec: DevRequestRecord): void {
    this.records.push(rec);
    if (this.records.length > MAX_REQUEST_RECORDS) this.records.shift();
  }

  requestRecords(): DevRequestRecord[] {
    return this.records.map((r) => ({ ...r }));
  }
}
