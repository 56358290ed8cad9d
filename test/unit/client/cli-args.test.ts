import { describe, expect, it } from 'vitest';
import { requestBody, vaultPaths } from '../../../src/agent/request.ts';
import { shellQuote } from '../../../src/agent/common.ts';
import { UsageError } from '../../../src/lib/cli-args.ts';
import { runCli } from '../../../src/cli/main.ts';

/** Runs the CLI in-process: no broker is needed for anything that fails before the first HTTP call. */
async function jit(args: string[], env: Record<string, string> = { JIT_AGENT_TOKEN: 'jit_x_y', JIT_URL: 'http://127.0.0.1:9' }) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(args, { env, out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('vault path syntax', () => {
  it('accepts PATH:CAPS and pairs bare paths with --cap in order', () => {
    expect(vaultPaths(['a/b:read,update', 'c/d'], ['list'])).toEqual([
      { path: 'a/b', capabilities: ['read', 'update'] },
      { path: 'c/d', capabilities: ['list'] },
    ]);
    expect(vaultPaths(['a', 'b'], ['read', 'update,create'])).toEqual([
      { path: 'a', capabilities: ['read'] },
      { path: 'b', capabilities: ['update', 'create'] },
    ]);
    expect(vaultPaths(['a', 'b'], ['read'])).toEqual([
      { path: 'a', capabilities: ['read'] },
      { path: 'b', capabilities: ['read'] },
    ]);
  });

  it.each([
    [[], [], /at least one --path/],
    [['a:read'], ['list'], /already names its capabilities/],
    [['a', 'b', 'c'], ['read', 'list'], /3 --path without :CAPS but 2 --cap/],
    [['a'], [], /1 --path without :CAPS but 0 --cap/],
  ])('refuses %j with %j', (paths, caps, message) => {
    expect(() => vaultPaths(paths, caps)).toThrow(UsageError);
    expect(() => vaultPaths(paths, caps)).toThrow(message);
  });

  it('checks the body with the broker schema', () => {
    expect(requestBody(['vault'], { path: ['homelab/data/x:read'], tier: '2', reason: 'r', ttl: '15m', session: 'hook:jit:a' })).toEqual({
      resource: 'vault',
      tier: 2,
      reason: 'r',
      ttl: '15m',
      session_key: 'hook:jit:a',
      vault_paths: [{ path: 'homelab/data/x', capabilities: ['read'] }],
    });
    expect(requestBody(['gate'], { repo: 'homelab/app', ref: ['refs/heads/agent/x'], tier: '1', reason: 'r' })).toEqual({
      resource: 'gate',
      tier: 1,
      reason: 'r',
      repo: 'homelab/app',
      refs: ['refs/heads/agent/x'],
    });
    expect(() => requestBody(['vault'], { path: ['x:fly'], tier: '1', reason: 'r' })).toThrow(/capability must be one of/);
    expect(() => requestBody(['vault'], { path: ['x:read'], tier: '1', reason: 'r', ttl: 'soon' })).toThrow(/ttl/);
  });
});

describe('agent-side CLI usage errors (exit 2, before any HTTP)', () => {
  it.each([
    [['request'], /missing resource/],
    [['request', 'kv'], /unknown resource "kv"/],
    [['request', 'vault', '--path', 'a:read', '--reason', 'r'], /--tier is required/],
    [['request', 'vault', '--path', 'a:read', '--tier', '1'], /--reason is required/],
    [['request', 'vault', '--path', 'a:read', '--tier', '4', '--reason', 'r'], /tier must be 1, 2 or 3/],
    [['request', 'vault', '--repo', 'x', '--path', 'a:read', '--tier', '1', '--reason', 'r'], /--repo does not apply/],
    [['request', 'gate', '--ref', 'refs/heads/x', '--tier', '1', '--reason', 'r'], /--repo is required/],
    [['request', 'vault', '--path', 'a:read', '--tier', '1', '--reason', 'r', '--wait-timeout', '1m'], /--wait-timeout needs --wait/],
    [['request', 'vault', '--path', 'a:read', '--tier', '1', '--reason', 'r', '--format', 'xml'], /--format must be one of env, json/],
    [['request', 'vault', '--bogus'], /unknown option "--bogus"/],
    [['status'], /missing request ID/],
    [['status', 'nope'], /not a request id/],
    [['claim', 'req_0000000000aaaaaaaaaaaaaaaa', '--format', 'yaml'], /--format must be one of env, json/],
    [['revoke', 'req_0000000000aaaaaaaaaaaaaaaa', 'extra'], /unexpected argument "extra"/],
    [['mcp', 'extra'], /unexpected argument/],
  ])('jit %j', async (args, message) => {
    const res = await jit(args);
    expect(res.code).toBe(2);
    expect(res.err).toMatch(message);
    expect(res.out).toBe('');
  });

  it('names the missing or bad variable', async () => {
    const noToken = await jit(['status', 'req_0000000000aaaaaaaaaaaaaaaa'], {});
    expect(noToken).toMatchObject({ code: 2 });
    expect(noToken.err).toMatch(/JIT_AGENT_TOKEN is not set/);
    const badUrl = await jit(['status', 'req_0000000000aaaaaaaaaaaaaaaa'], { JIT_AGENT_TOKEN: 't', JIT_URL: 'ftp://x' });
    expect(badUrl).toMatchObject({ code: 2 });
    expect(badUrl.err).toMatch(/^jit status: JIT_URL: /);
  });

  it('prints help for each command', async () => {
    for (const cmd of ['request', 'status', 'claim', 'revoke', 'mcp']) {
      const res = await jit([cmd, '--help']);
      expect(res.code, cmd).toBe(0);
      expect(res.out, cmd).toContain(`jit ${cmd}`);
    }
    expect((await jit(['--help'])).out).toMatch(/request vault[\s\S]*claim ID[\s\S]*mcp/);
  });
});

it('quotes values for eval', () => {
  expect(shellQuote('hvs.abc-DEF_1')).toBe('hvs.abc-DEF_1');
  expect(shellQuote("it's $(rm -rf /)")).toBe(`'it'\\''s $(rm -rf /)'`);
});
