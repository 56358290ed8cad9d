/**
 * The Vault calls the broker makes to issue a tier-1 Vault credential,
 * made directly against the development Vault by the benchmark: the
 * baseline the broker's overhead is measured against.
 */
import type { AutocannonRequest } from 'autocannon';
import { createVaultClient } from '../../src/vault/node-vault-client.ts';
import { processCpuMs, type LoadResult } from './load.ts';
import { summarize } from './stats.ts';

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

/**
 * The same two calls made by the broker's own Vault client (node-vault over
 * axios, src/vault/node-vault-client.ts) from the benchmark process:
 * `connections` loops back to back for `seconds` after `warmupSeconds`.
 * Separates what the Vault client library costs from what the broker adds.
 */
export async function nodeVaultLoad(o: {
  vaultUrl: string;
  rootToken: string;
  connections: number;
  seconds: number;
  warmupSeconds: number;
  vaultPid: number;
}): Promise<LoadResult> {
  const client = createVaultClient({ endpoint: o.vaultUrl, token: o.rootToken });
  let n = 0;
  const latencies: number[] = [];
  const begin = performance.now();
  const windowStart = begin + o.warmupSeconds * 1000;
  const end = windowStart + o.seconds * 1000;
  let cpu0 = { vault: NaN, client: process.cpuUsage() };
  const timer = setTimeout(() => (cpu0 = { vault: processCpuMs(o.vaultPid), client: process.cpuUsage() }), o.warmupSeconds * 1000);
  let errors = 0;
  const loop = async () => {
    while (performance.now() < end) {
      const id = ++n;
      const started = performance.now();
      try {
        await client.writePolicy(`bench-nv-${id}`, BENCH_POLICY);
        await client.createOrphanToken({ policies: [`bench-nv-${id}`], ttlSeconds: BENCH_TTL_SECONDS, meta: { jit_request_id: `req_bench${id}`, jit_agent: 'bench' }, displayName: 'jit-bench' });
      } catch {
        errors++;
        continue;
      }
      if (started >= windowStart) latencies.push(performance.now() - started);
    }
  };
  await Promise.all(Array.from({ length: o.connections }, loop));
  clearTimeout(timer);
  client.stop();
  const seconds = (performance.now() - windowStart) / 1000;
  const used = process.cpuUsage(cpu0.client);
  const ops = latencies.length;
  return {
    ...summarize(latencies),
    connections: o.connections,
    ops,
    seconds,
    opsPerSecond: ops / seconds,
    errors,
    unexpected: {},
    cpuMsPerOp: { client: (used.user + used.system) / 1000 / ops, vault: (processCpuMs(o.vaultPid) - cpu0.vault) / ops },
    slowestFirstMs: NaN,
  };
}
