import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { reconcile } from '../../../src/broker/lifecycle.ts';
import { createLogger } from '../../../src/lib/logger.ts';
import { startBroker, type RunningBroker } from '../../../src/main.ts';
import { ROOT_TOKEN, startHarness, type Harness } from '../../helpers/broker-harness.ts';
import { until } from '../../helpers/chaos-process.ts';

/**
 * Two installations (two databases, say production and staging) sharing one
 * Vault: each writes its ephemeral policies under a prefix of its own, and
 * start-up reconciliation deletes only its own strays, never the other's
 * live grants. All over HTTP against one development Vault.
 */

const body = { resource: 'vault', tier: 1, reason: 'r', vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }] };

let a: Harness;
let b: RunningBroker;
let bDir: string;
let bLogs = '';

async function startSecondInstallation(): Promise<void> {
  bDir = mkdtempSync(join(tmpdir(), 'jit-broker-second-'));
  const sink = new Writable({
    write(chunk, _enc, cb) {
      bLogs += chunk.toString();
      cb();
    },
  });
  b = await startBroker(
    { JIT_HOST: '127.0.0.1', JIT_PORT: '0', JIT_DB: join(bDir, 'jit.db'), JIT_POLICIES: a.policiesDir, VAULT_ADDR: a.devVault.url, VAULT_TOKEN: ROOT_TOKEN },
    { clock: a.clock, log: createLogger('debug', sink), sweepIntervalMs: 3_600_000 },
  );
  await until(() => bLogs.includes('startup reconciliation done'), 20_000, 'the second broker to reconcile');
}

async function issue(url: string, token: string): Promise<{ policy: string; token: string; accessor: string }> {
  const res = await fetch(`${url}/jit/request`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const json = (await res.json()) as { credential: { policies: string[]; token: string; accessor: string } };
  expect(res.status, JSON.stringify(json)).toBe(201);
  const own = json.credential.policies.filter((p) => p !== 'default');
  expect(own).toHaveLength(1);
  return { policy: own[0]!, token: json.credential.token, accessor: json.credential.accessor };
}

async function canRead(token: string): Promise<boolean> {
  try {
    return (await a.vaultAs(token).read('homelab/data/docker/registry')).data.data.username === 'demo';
  } catch (err) {
    if ((err as { response?: { statusCode?: number } }).response?.statusCode === 403) return false;
    throw err;
  }
}

/** The text of a leftover policy: enough to grant something. */
const LEFTOVER = '{"path":{"homelab/data/docker/registry":{"capabilities":["read"]}}}';

beforeEach(async () => {
  a = await startHarness();
  bLogs = '';
});
afterEach(async () => {
  await b?.stop();
  await a.close();
  if (bDir) rmSync(bDir, { recursive: true, force: true });
});

describe('two installations sharing one Vault', () => {
  it("a second installation's start-up reconciliation leaves the first one's live policy, token and strays alone", async () => {
    const fromA = await issue(a.broker.url, await a.addAgent('moltbot'));
    // A crash leftover of A: a policy under A's own prefix that no row of A's database holds.
    const strayOfA = fromA.policy.replace(/cred_[0-9a-z]+$/, 'cred_00000000000000000000000000');
    expect(strayOfA).not.toBe(fromA.policy);
    await a.root.write(`sys/policies/acl/${strayOfA}`, { policy: LEFTOVER });

    await startSecondInstallation();
    expect(await a.policyExists(fromA.policy)).toBe(true);
    expect(await a.policyExists(strayOfA)).toBe(true);
    expect(await canRead(fromA.token)).toBe(true);
    expect((await reconcile(b.deps)).strayPolicies).toBe(0);
    expect(await a.policyExists(fromA.policy)).toBe(true);

    // B's own grants carry another prefix; A's reconciliation leaves them alone and deletes only its own stray.
    const fromB = await issue(b.url, (await b.deps.agents.add('moltbot')).token);
    const prefixOf = (name: string) => name.slice(0, name.indexOf('cred_'));
    expect(prefixOf(fromB.policy)).not.toBe(prefixOf(fromA.policy));
    const summary = await reconcile(a.broker.deps);
    expect(summary.strayPolicies).toBe(1);
    expect(await a.policyExists(strayOfA)).toBe(false);
    expect(await a.policyExists(fromB.policy)).toBe(true);
    expect(await canRead(fromB.token)).toBe(true);
    expect(await canRead(fromA.token)).toBe(true);
  });

  it('policies of the old shared prefix are deleted only by the installation whose database names them', async () => {
    const fromA = await issue(a.broker.url, await a.addAgent('moltbot'));
    const { deps } = a.broker;
    const request = (await deps.storage.requests.list({ limit: 1 }))[0]!;
    // Left by an older version of A: a `jit-req_…` policy a finished credential row of A's database names.
    const legacyOfA = 'jit-req_cred_0000000000000000000000000a';
    await deps.storage.credentials.insert({ id: 'cred_0000000000000000000000000a', request_id: request.id, type: 'vault_token', state: 'failed', vault_policy: legacyOfA, accessor: null, jti: null, issued_at: null, expires_at: a.clock.now(), reserved_at: a.clock.now() });
    // And one no database here knows: another installation's, on an older version.
    const legacyUnknown = 'jit-req_cred_0000000000000000000000000b';
    for (const name of [legacyOfA, legacyUnknown]) await a.root.write(`sys/policies/acl/${name}`, { policy: LEFTOVER });

    await startSecondInstallation();
    expect(await a.policyExists(legacyOfA)).toBe(true);
    expect(await a.policyExists(legacyUnknown)).toBe(true);

    const summary = await reconcile(deps);
    expect(summary.strayPolicies).toBe(1);
    expect(await a.policyExists(legacyOfA)).toBe(false);
    expect(await a.policyExists(legacyUnknown)).toBe(true);
    expect(await canRead(fromA.token)).toBe(true);
  });
});
