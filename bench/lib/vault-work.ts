/**
 * The Vault calls the broker makes to issue a tier-1 Vault credential,
 * made directly against the development Vault by the benchmark: the
 * baseline the broker's overhead is measured against.
 */
import type { AutocannonRequest } from 'autocannon';

/** The grant every benchmark request asks for. */
export const BENCH_PATH = 'bench/data/app';
export const BENCH_TTL_SECONDS = 600;

/** The broker's ephemeral policy for BENCH_PATH/read, in the JSON form it writes. */
export const BENCH_POLICY = JSON.stringify({ path: { [BENCH_PATH]: { capabilities: ['read'] } } });

function tokenBody(policy: string, n: number): string {
  return JSON.stringify({
    policies: [policy],
    ttl: `${BENCH_TTL_SECONDS}s`,
    explicit_max_ttl: `${BENCH_TTL_SECONDS}s`,
    renewable: false,
    meta: { jit_request_id: `req_bench${n}`, jit_agent: 'bench' },
    display_name: 'jit-bench',
  });
}

/**
 * Policy write then orphan token create, one fresh policy per operation:
 * what the broker did for every request before policies were shared.
 */
export function policyAndTokenRequests(rootToken: string): AutocannonRequest[] {
  let n = 0;
  const headers = { 'x-vault-token': rootToken, 'content-type': 'application/json' };
  return [
    {
      method: 'PUT',
      headers,
      setupRequest(req, ctx) {
        const id = ++n;
        ctx['id'] = id;
        return { ...req, path: `/v1/sys/policies/acl/bench-raw-${id}`, body: JSON.stringify({ policy: BENCH_POLICY }) };
      },
    },
    {
      method: 'POST',
      path: '/v1/auth/token/create-orphan',
      headers,
      setupRequest(req, ctx) {
        const id = ctx['id'] as number;
        return { ...req, body: tokenBody(`bench-raw-${id}`, id) };
      },
    },
  ];
}

/** Token create alone, bound to one existing policy: the Vault work of a repeated grant once policies are shared. */
export function tokenOnlyRequests(rootToken: string, policy: string): AutocannonRequest[] {
  let n = 0;
  return [
    {
      method: 'POST',
      path: '/v1/auth/token/create-orphan',
      headers: { 'x-vault-token': rootToken, 'content-type': 'application/json' },
      setupRequest(req) {
        return { ...req, body: tokenBody(policy, ++n) };
      },
    },
  ];
}

/** Writes `name` once (before the token-only load). */
export async function writePolicy(vaultUrl: string, rootToken: string, name: string): Promise<void> {
  const res = await fetch(`${vaultUrl}/v1/sys/policies/acl/${name}`, {
    method: 'PUT',
    headers: { 'x-vault-token': rootToken, 'content-type': 'application/json' },
    body: JSON.stringify({ policy: BENCH_POLICY }),
  });
  if (!res.ok) throw new Error(`could not write policy ${name}: HTTP ${res.status}`);
}
