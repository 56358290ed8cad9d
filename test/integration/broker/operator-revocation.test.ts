import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../../../src/cli/main.ts';
import { requestCredential } from '../../../src/broker/request-credential.ts';
import { removeAgentRevoking } from '../../../src/broker/revoke.ts';
import { CredentialRequestBody } from '../../../src/wire/schemas.ts';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';

/**
 * Revocations by the operator, below the CLI: `jit agent remove`
 * (removeAgentRevoking) ends the agent row and every open request of the
 * agent in one transaction, and a request the agent was sending at that
 * instant, authenticated before the removal, cannot be inserted after it.
 * A revocation is never refused because the policy files are broken.
 */
let h: Harness;
beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  await h.close();
});

const TIER1 = { resource: 'vault', tier: 1, reason: 'read', vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }] };
const TIER2 = { resource: 'vault', tier: 2, reason: 'write', vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['update'] }] };

describe('removing an agent', () => {
  it('refuses a request authenticated just before the removal: nothing is inserted, nothing issued', async () => {
    const token = await h.addAgent('moltbot');
    const agent = (await h.broker.deps.agents.authenticate(token))!;
    expect(await removeAgentRevoking(h.broker.deps, 'moltbot', 'local-cli')).toEqual([]);
    for (const body of [TIER1, TIER2]) {
      await expect(requestCredential(h.broker.deps, agent, CredentialRequestBody.parse(body))).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    }
    expect(await h.broker.deps.storage.requests.list({ agentName: 'moltbot' })).toEqual([]);
    expect(await h.broker.deps.storage.credentials.inUse()).toEqual([]);
  });

  it('ends every open request of the agent and no other, in the transaction that deletes it', async () => {
    const token = await h.addAgent('moltbot');
    const other = await h.addAgent('other');
    const issued = await h.call('POST', '/jit/request', { token, body: TIER1 });
    const pending = await h.call('POST', '/jit/request', { token, body: TIER2 });
    const bystander = await h.call('POST', '/jit/request', { token: other, body: TIER1 });
    expect([issued.status, pending.status, bystander.status]).toEqual([201, 202, 201]);

    const records = (await removeAgentRevoking(h.broker.deps, 'moltbot', 'local-cli'))!;
    expect(records.map((r) => [r.requestId, r.was])).toEqual([
      [issued.body.id, 'issued'],
      [pending.body.id, 'pending'],
    ]);
    expect(records[0]!.credential).toMatchObject({ state: 'ending', accessor: issued.body.credential.accessor });
    expect(await h.broker.deps.agents.get('moltbot')).toBeUndefined();
    expect((await h.broker.deps.storage.requests.get(bystander.body.id))!.status).toBe('issued');
    const audit = h.db.prepare(`SELECT request_id, actor FROM audit_log WHERE event = 'request.revoked' ORDER BY seq`).all();
    expect(audit).toEqual([
      { request_id: issued.body.id, actor: 'local-cli' },
      { request_id: pending.body.id, actor: 'local-cli' },
    ]);
    expect(await removeAgentRevoking(h.broker.deps, 'moltbot', 'local-cli')).toBeNull();
  });
});

describe('revoking with broken policy files', () => {
  it('goes ahead, its webhooks left for the service to address, and says so (jit approve, by contrast, refuses)', async () => {
    const token = await h.addAgent('moltbot');
    const issued = await h.call('POST', '/jit/request', { token, body: TIER1 });
    const pending = await h.call('POST', '/jit/request', { token, body: TIER2 });
    writeFileSync(join(h.policiesDir, 'zz-broken.yaml'), 'rules: [oops\n');
    const run = async (...args: string[]) => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await runCli(args, { env: { JIT_DB: join(h.dir, 'jit.db'), JIT_POLICIES: h.policiesDir }, out: (l) => out.push(l), err: (l) => err.push(l) });
      return { code, out: out.join('\n'), err: err.join('\n') };
    };
    const approve = await run('approve', pending.body.id);
    expect(approve.code).toBe(1);
    expect(approve.err).toContain('fix them first');

    const revoke = await run('requests', 'revoke', '--all');
    expect(revoke.code, revoke.err).toBe(0);
    expect(revoke.err).toContain('revoking anyway');
    expect(revoke.err).toContain('written without a target');
    expect(revoke.err).toContain('zz-broken.yaml');
    expect((await h.broker.deps.storage.requests.get(issued.body.id))!.status).toBe('revoked');
    expect((await h.broker.deps.storage.requests.get(pending.body.id))!.status).toBe('revoked');
    // Nothing lost: one "revoked" event per request, unresolved or already addressed by the service from its own policy.
    const events = h.db.prepare(`SELECT request_id, target FROM webhook_outbox WHERE type = 'jit.request.revoked'`).all() as { request_id: string; target: string }[];
    expect(events.map((e) => e.request_id).sort()).toEqual([issued.body.id, pending.body.id].sort());
    for (const e of events) expect(['unresolved', 'openclaw']).toContain(e.target);
  });
});
