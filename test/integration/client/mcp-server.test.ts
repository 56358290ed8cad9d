import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { decideRequest } from '../../../src/broker/decide.ts';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';
import { JIT_BIN } from '../../helpers/cli.ts';
import { closedPort } from '../../unit/client/scripted-server.ts';
import { tokenIsDead } from './helpers.ts';

interface McpSession {
  client: Client;
  stderr: () => string;
  /** Transport-level errors: anything on stdout that is not JSON-RPC shows up here. */
  errors: Error[];
  call(name: string, args: Record<string, unknown>): Promise<CallToolResult & { structuredContent?: any }>;
  close(): Promise<void>;
}

/** Spawns `node bin/jit.mjs mcp` and connects the SDK's client to it over stdio. */
async function startMcp(env: Record<string, string>): Promise<McpSession> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [JIT_BIN, 'mcp'],
    cwd: join(import.meta.dirname, '..', '..', '..'),
    env: { PATH: process.env.PATH ?? '', ...env },
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (d) => (stderr += d));
  const client = new Client({ name: 'jit-test', version: '1.0.0' });
  const errors: Error[] = [];
  client.onerror = (e) => void errors.push(e);
  await client.connect(transport);
  return {
    client,
    stderr: () => stderr,
    errors,
    call: async (name, args) => (await client.callTool({ name, arguments: args })) as CallToolResult,
    close: () => client.close(),
  };
}

const text = (r: CallToolResult) => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');

let h: Harness;
let token: string;
let mcp: McpSession;
beforeAll(async () => {
  h = await startHarness({ env: { JIT_RATE_PER_MINUTE: '4' } });
  token = await h.addAgent('moltbot');
  mcp = await startMcp({ JIT_URL: h.broker.url, JIT_AGENT_TOKEN: token });
});
beforeEach(() => {
  h.clock.advance(61_000); // a fresh per-minute rate window for each test
});
afterAll(async () => {
  await mcp?.close();
  await h.close();
});

describe('jit mcp over stdio', () => {
  it('lists the six tools, with input schemas derived from the HTTP API schemas', async () => {
    const { tools } = await mcp.client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(['claim_credential', 'request_gate_credential', 'request_status', 'request_vault_credential', 'revoke_credential', 'wait_for_decision']);
    expect(tools.find((t) => t.name === 'wait_for_decision')!.inputSchema).toMatchObject({ required: ['request_id'] });
    const vault = tools.find((t) => t.name === 'request_vault_credential')!;
    expect(Object.keys(vault.inputSchema.properties!).sort()).toEqual(['reason', 'session_key', 'tier', 'ttl', 'vault_paths']);
    expect(vault.inputSchema).toMatchObject({ required: ['tier', 'reason', 'vault_paths'], additionalProperties: false });
    expect(vault.description).toMatch(/tier 1 = issued at once[\s\S]*Tier 2 = a human approves it in Telegram[\s\S]*Tier 3[\s\S]*never lowers it/i);
    const gate = tools.find((t) => t.name === 'request_gate_credential')!;
    expect(Object.keys(gate.inputSchema.properties!).sort()).toEqual(['reason', 'refs', 'repo', 'session_key', 'tier', 'ttl']);
    const claim = tools.find((t) => t.name === 'claim_credential')!;
    expect(claim.inputSchema).toMatchObject({ required: ['request_id'] });
  });

  it('tier 1: issued at once; the token reads the path; revoke_credential kills it', async () => {
    const res = await mcp.call('request_vault_credential', {
      tier: 1,
      reason: 'read the registry login',
      vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }],
      ttl: '10m',
    });
    expect(res.isError, text(res)).toBeFalsy();
    expect(text(res)).toMatch(/^Issued at once req_\w+ \(tier 1\): Vault token hvs\./);
    const { id, credential } = res.structuredContent;
    expect((await h.vaultAs(credential.token).read('homelab/data/docker/registry')).data.data.username).toBe('demo');

    const revoked = await mcp.call('revoke_credential', { request_id: id });
    expect(revoked.isError).toBeFalsy();
    expect(revoked.structuredContent).toMatchObject({ id, status: 'revoked' });
    expect(await tokenIsDead(h, credential.token, 'homelab/data/docker/registry')).toBe(true);
  });

  it('tier 2 without a progress token: pending at once; wait_for_decision waits (and says so at its timeout), then returns the approval', async () => {
    const res = await mcp.call('request_vault_credential', {
      tier: 2,
      reason: 'rotate the web key',
      vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read', 'update'] }],
    });
    expect(res.isError, text(res)).toBeFalsy();
    expect(res.structuredContent).toMatchObject({ status: 'pending', tier: 2, required_tier: 2 });
    const id = res.structuredContent.id as string;
    expect(text(res)).toContain(`call claim_credential with request_id "${id}"`);
    expect(text(res)).toContain(`Call wait_for_decision with request_id "${id}"`);

    const still = await mcp.call('wait_for_decision', { request_id: id, timeout_seconds: 1 });
    expect(still.isError, text(still)).toBeFalsy();
    expect(text(still)).toMatch(/is still pending after \d+ s\. Call wait_for_decision again/);
    const waiting = mcp.call('wait_for_decision', { request_id: id });
    await decideRequest(h.broker.deps, id, { approver: 'local-cli', decision: 'approve' });
    const decided = await waiting;
    expect(decided.structuredContent).toMatchObject({ id, status: 'approved', decision: { approver: 'local-cli', narrowed: false } });
    expect(text(decided)).toMatch(new RegExp(`^Request ${id} approved by local-cli\\.`));
    const status = await mcp.call('request_status', { request_id: id });
    expect(status.structuredContent).toMatchObject({ id, status: 'approved', decision: { approver: 'local-cli' } });
    expect(text(status)).toContain('Approved: call claim_credential');

    const claimed = await mcp.call('claim_credential', { request_id: id });
    expect(claimed.isError, text(claimed)).toBeFalsy();
    const vaultToken = claimed.structuredContent.credential.token as string;
    await h.vaultAs(vaultToken).write('homelab/data/apps/web', { data: { key: 'rotated-by-mcp' } });
    expect((await h.root.read('homelab/data/apps/web')).data.data.key).toBe('rotated-by-mcp');

    const again = await mcp.call('claim_credential', { request_id: id });
    expect(again.isError).toBe(true);
    expect(text(again)).toMatch(/^Conflict \(HTTP 409 CONFLICT\): the credential of request req_\w+ was already claimed/);

    expect((await mcp.call('revoke_credential', { request_id: id })).isError).toBeFalsy();
    expect(await tokenIsDead(h, vaultToken, 'homelab/data/apps/web')).toBe(true);
  });

  it('gate: a tier 1 push credential the gate verifies', async () => {
    const res = await mcp.call('request_gate_credential', { tier: 1, reason: 'push the fix', repo: 'homelab/app', refs: ['refs/heads/agent/fix-2'] });
    expect(res.isError, text(res)).toBeFalsy();
    const verify = await h.call('POST', '/gate/verify', { body: { credential: res.structuredContent.credential.credential, repo: 'homelab/app', ref: 'refs/heads/agent/fix-2' } });
    expect(verify.body).toMatchObject({ valid: true, agent: 'moltbot' });
  });

  it('errors are tool results with isError, and the server keeps serving', async () => {
    const denied = await mcp.call('request_vault_credential', { tier: 1, reason: 'r', vault_paths: [{ path: 'sys/policies/acl/x', capabilities: ['read'] }] });
    expect(denied.isError).toBe(true);
    expect(text(denied)).toMatch(/^Denied by policy \(HTTP 403 DENIED_BY_POLICY\): .*sys\/policies\/acl\/x.*asking again unchanged will be refused again/);

    const badArgs = await mcp.call('request_vault_credential', { tier: 7, reason: 'r', vault_paths: [], resource: 'vault' });
    expect(badArgs.isError).toBe(true);
    expect(text(badArgs)).toMatch(/Invalid arguments for tool request_vault_credential/);

    const unknown = await mcp.call('request_status', { request_id: 'req_0000000000aaaaaaaaaaaaaaaa' });
    expect(unknown.isError).toBe(true);
    expect(text(unknown)).toMatch(/Not found \(HTTP 404 NOT_FOUND\)/);

    // The policy refusal above counts toward the per-agent limit of 4 (SPEC §11): three more fill the window.
    for (let i = 0; i < 3; i++) {
      const body = { resource: 'vault', tier: 1, reason: 'fill the window', vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }] };
      expect((await h.call('POST', '/jit/request', { token, body })).status).toBe(201);
    }
    const limited = await mcp.call('request_vault_credential', { tier: 1, reason: 'r', vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }] });
    expect(limited.isError).toBe(true);
    expect(text(limited)).toMatch(/^Too many requests \(HTTP 429 RATE_LIMITED\): .*Retry after \d+ seconds\. Do not retry in a tight loop\.$/);

    expect((await mcp.client.listTools()).tools).toHaveLength(6);
  });

  it('broker down: tool errors saying so, not a crash', async () => {
    const port = await closedPort();
    const down = await startMcp({ JIT_URL: `http://127.0.0.1:${port}`, JIT_AGENT_TOKEN: token });
    try {
      const res = await down.call('request_status', { request_id: 'req_0000000000aaaaaaaaaaaaaaaa' });
      expect(res.isError).toBe(true);
      expect(text(res)).toContain(`The JIT credential broker is unreachable: cannot reach the JIT broker at http://127.0.0.1:${port}: connection refused`);
      expect((await down.call('revoke_credential', { request_id: 'req_0000000000aaaaaaaaaaaaaaaa' })).isError).toBe(true);
      expect((await down.client.listTools()).tools).toHaveLength(6);
      expect(down.stderr()).toContain('request_status: JitUnreachableError');
      expect(down.stderr()).not.toContain(token);
    } finally {
      await down.close();
    }
  });

  it('wrote nothing but JSON-RPC to stdout and logged no token', () => {
    expect(mcp.errors).toEqual([]);
    expect(mcp.stderr()).toContain('jit mcp: serving the JIT broker at');
    expect(mcp.stderr()).not.toContain(token);
  });
});

it('jit mcp without a token exits 2 with one clear line', async () => {
  const { runJit } = await import('../../helpers/cli.ts');
  const res = await runJit(['mcp'], { JIT_URL: 'http://127.0.0.1:8787' });
  expect(res.code).toBe(2);
  expect(res.stdout).toBe('');
  expect(res.stderr.trim()).toBe('jit mcp: JIT_AGENT_TOKEN is not set: export the agent token that "jit agent add NAME" printed');
});
