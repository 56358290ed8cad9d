import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';

/**
 * Path segments that name JavaScript's prototype machinery are ordinary
 * Vault path segments: a grant for them lands in the ephemeral policy
 * exactly as requested (read back from the development Vault over HTTP),
 * never silently dropped.
 */

const HAZARDS = ['__proto__', 'constructor', 'prototype'];

const POLICY = `
agents:
  moltbot:
    sessions: ["hook:jit:moltbot*"]
rules:
  - name: one-level
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/+", "+", "homelab/data/docker/+/x"]
    capabilities: [read, list]
    tier: 1
    max_ttl: 1h
`;

let h: Harness;
let token: string;
beforeEach(async () => {
  h = await startHarness({ policy: POLICY });
  token = await h.addAgent('moltbot');
});
afterEach(async () => {
  await h.close();
});

describe('ephemeral policies with path segments named like prototype properties', () => {
  const paths = [...HAZARDS.map((s) => `homelab/data/${s}`), ...HAZARDS, ...HAZARDS.map((s) => `homelab/data/docker/${s}/x`)];

  it('grants exactly the requested paths, readable back from Vault', async () => {
    for (const p of paths.filter((x) => x.startsWith('homelab/'))) await h.root.write(p, { data: { name: p } });
    const vault_paths = paths.map((path) => ({ path, capabilities: ['read'] }));
    const res = await h.call('POST', '/jit/request', { token, body: { resource: 'vault', tier: 1, reason: 'prototype-named paths', vault_paths } });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const own = res.body.credential.policies.filter((p: string) => p !== 'default');
    expect(own).toHaveLength(1);

    const stored = await h.root.read(`sys/policies/acl/${own[0]}`);
    const text = JSON.parse(stored.data.policy as string) as { path: Record<string, { capabilities: string[] }> };
    expect(Object.getPrototypeOf(text.path)).toBe(Object.prototype);
    expect(Object.keys(text.path).sort()).toEqual([...paths].sort());
    for (const p of paths) expect(Object.getOwnPropertyDescriptor(text.path, p)?.value).toEqual({ capabilities: ['read'] });

    // And Vault enforces them: the agent's token reads each secret and has read on each path.
    const agent = h.vaultAs(res.body.credential.token);
    for (const p of paths.filter((x) => x.startsWith('homelab/'))) expect((await agent.read(p)).data.data.name).toBe(p);
    const caps = await agent.write('sys/capabilities-self', { paths });
    for (const p of paths) expect(caps.data[p], p).toEqual(['read']);
  });
});
