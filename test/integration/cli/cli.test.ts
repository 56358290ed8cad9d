import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runJit } from '../../helpers/cli.ts';

let dir: string;
let env: Record<string, string>;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'jit-cli-'));
  env = { JIT_DB: join(dir, 'jit.db'), JIT_POLICIES: join(import.meta.dirname, '..', '..', '..', 'policies') };
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('jit agent', () => {
  it('adds an agent and prints its token as the last line, once', async () => {
    const add = await runJit(['agent', 'add', 'moltbot', '--session', 'hook:jit:moltbot'], env);
    expect(add.code).toBe(0);
    const lines = add.stdout.trim().split('\n');
    expect(lines.at(-1)).toMatch(/^jit_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    const list = await runJit(['agent', 'list'], env);
    expect(list.stdout).toContain('moltbot\thook:jit:moltbot');
    expect(list.stdout).not.toContain(lines.at(-1));
    expect((await runJit(['agent', 'add', 'moltbot'], env)).code).toBe(1);
    expect((await runJit(['agent', 'remove', 'moltbot'], env)).code).toBe(0);
    expect((await runJit(['agent', 'remove', 'moltbot'], env)).code).toBe(1);
  });

  it('explains wrong use with exit code 2', async () => {
    for (const args of [['agent'], ['agent', 'fly'], ['requests', '--status', 'odd'], ['approve'], ['approve', 'nope'], ['frobnicate']]) {
      const res = await runJit(args, env);
      expect(res.code, args.join(' ')).toBe(2);
      expect(res.stderr.length, args.join(' ')).toBeGreaterThan(0);
    }
    const help = await runJit(['--help'], env);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('policy check');
  });

  it('names the bad variable in one line on bad configuration', async () => {
    const res = await runJit(['agent', 'list'], { ...env, JIT_APPROVAL_TIMEOUT: 'soon' });
    expect(res.code).toBe(2);
    expect(res.stderr.trim().split('\n')).toHaveLength(1);
    expect(res.stderr).toContain('JIT_APPROVAL_TIMEOUT');
  });

  it('serve refuses to start on bad configuration with one line', async () => {
    const res = await runJit(['serve'], { ...env, JIT_PORT: 'http' });
    expect(res.code).toBe(2);
    expect(res.stderr.trim()).toMatch(/^jit: configuration error: JIT_PORT: /);
  });
});

describe('jit policy check', () => {
  it('passes on the shipped policies', async () => {
    const res = await runJit(['policy', 'check'], env);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('OK');
  });

  it('warns, and exits 0, on a sessions pattern whose "*" does not follow a separator', async () => {
    const loose = join(dir, 'loose-policies');
    mkdirSync(loose);
    writeFileSync(join(loose, 'team.yaml'), 'agents:\n  dev:\n    sessions: ["hook:jit:dev*"]\nrules:\n  - {name: r, agents: [dev], resource: vault, paths: ["x"], capabilities: [read], tier: 1}\n');
    const res = await runJit(['policy', 'check', loose], env);
    expect(res.code).toBe(0);
    expect(res.stderr).toContain('warning: ');
    expect(res.stderr).toContain('agents.dev: sessions[0]: session pattern "hook:jit:dev*"');
    expect(res.stderr).toContain('(e.g. "hook:jit:dev:*")');
  });

  it('reports file, rule and field for each error and exits 1', async () => {
    const bad = join(dir, 'bad-policies');
    mkdirSync(bad);
    writeFileSync(
      join(bad, 'team.yaml'),
      'rules:\n  - name: writes\n    agents: [a]\n    resource: vault\n    paths: ["x/*"]\n    capabilities: [read, sudo]\n    tier: 2\n',
    );
    const res = await runJit(['policy', 'check', bad], env);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('team.yaml');
    expect(res.stderr).toContain('writes');
    expect(res.stderr).toContain('capabilities[1]');
  });
});
