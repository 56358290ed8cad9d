import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CliIo } from '../../../src/cli/io.ts';
import { COMMAND_NAMES, runCli } from '../../../src/cli/main.ts';
import { runJit } from '../../helpers/cli.ts';

let dir: string;
let env: Record<string, string>;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'jit-help-'));
  env = { JIT_DB: join(dir, 'jit.db'), JIT_POLICIES: join(import.meta.dirname, '..', '..', '..', 'policies'), JIT_URL: 'http://127.0.0.1:9', JIT_AGENT_TOKEN: 'jit_0123456789abcdef_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' };
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** runCli in-process (spawning tsx per case would take half a second each). */
async function jit(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { env, out: (l) => out.push(l), err: (l) => err.push(l) };
  const code = await runCli(args, io);
  return { code, stdout: out.join('\n'), stderr: err.join('\n') };
}

describe('jit --help', () => {
  it('lists every command', async () => {
    const res = await jit(['--help']);
    expect(res.code).toBe(0);
    for (const name of COMMAND_NAMES) expect(res.stdout, name).toMatch(new RegExp(`^  ${name}\\b`, 'm'));
    expect(await jit(['help'])).toEqual(res);
    expect(await jit(['-h'])).toEqual(res);
  });

  it('no command at all is wrong use: usage on stderr, exit 2', async () => {
    const res = await jit([]);
    expect(res.code).toBe(2);
    expect(res.stdout).toBe('');
    expect(res.stderr).toContain('Usage: jit');
  });

  it('suggests the command a typo meant', async () => {
    const res = await jit(['aprove', 'req_x']);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('did you mean "jit approve"');
  });
});

describe.each(COMMAND_NAMES)('jit %s --help', (name) => {
  it('prints its usage on stdout and exits 0, the same as jit help NAME', async () => {
    const res = await jit([name, '--help']);
    expect(res.code).toBe(0);
    expect(res.stderr).toBe('');
    expect(res.stdout).toMatch(/^usage: jit /i);
    expect(res.stdout).toContain(`jit ${name}`);
    expect(res.stdout.split('\n').length, 'more than a bare usage line').toBeGreaterThan(2);
    expect(await jit(['help', name])).toEqual(res);
    expect((await jit([name, '-h'])).stdout).toBe(res.stdout);
  });
});

describe('wrong use gets a clear error, a pointer to --help and exit 2', () => {
  it.each([
    ['serve', 'extra'],
    ['serve', '--port', '1'],
    ['dev-vault', '--port', 'eighty'],
    ['agent'],
    ['agent', 'add'],
    ['agent', 'fly', 'x'],
    ['requests', '--status', 'odd'],
    ['requests', '--limit', '0'],
    ['requests', 'show'],
    ['requests', 'show', 'req_x', '--reason', 'why'],
    ['requests', 'revoke'],
    ['requests', 'revoke', 'req_x', '--all'],
    ['requests', 'revoke', '--all', '--json'],
    ['requests', 'purge'],
    ['credentials', 'extra'],
    ['credentials', '--agent', 'Not A Name'],
    ['approve'],
    ['approve', 'not-an-id'],
    ['deny', 'req_x', 'extra'],
    ['audit'],
    ['audit', 'export', '--since', '-1'],
    ['policy'],
    ['policy', 'lint'],
    ['gate', 'verify', '--repo', 'r'],
    ['webhooks'],
    ['webhooks', 'retry'],
    ['webhooks', 'list', '--all-dead'],
    ['webhooks', 'retry', '--all-dead', '--limit', '5'],
    ['keys', 'spin'],
    ['request'],
    ['request', 'vault', '--tier', '1'],
    ['status'],
    ['claim', 'nope'],
    ['revoke', 'req_x', 'req_y'],
    ['mcp', 'extra'],
  ])('jit %s', async (...args) => {
    const res = await jit(args);
    expect(res.code, res.stderr).toBe(2);
    expect(res.stdout).toBe('');
    const name = args[0]!;
    expect(res.stderr).toMatch(new RegExp(`^jit ${name}: \\S`));
    expect(res.stderr).toContain(`"jit ${name} --help"`);
  });
});

describe('as a process', () => {
  it('jit agent --help and a wrong use, through bin/jit.mjs', async () => {
    const help = await runJit(['agent', '--help'], env);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('jit agent add NAME');
    const wrong = await runJit(['agent', 'add'], env);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('agent add needs a NAME');
  });
});

describe('docs/cli.md', () => {
  const md = readFileSync(join(import.meta.dirname, '..', '..', '..', 'docs', 'cli.md'), 'utf8');

  it.each(COMMAND_NAMES)('documents jit %s with every option its --help shows', async (name) => {
    const start = md.indexOf(`\n### \`jit ${name}\``);
    expect(start, `docs/cli.md has no "### \`jit ${name}\`" section`).toBeGreaterThan(0);
    const next = md.slice(start + 1).search(/\n#{2,3} /);
    const section = md.slice(start, next < 0 ? undefined : start + 1 + next);
    const help = (await jit([name, '--help'])).stdout;
    for (const option of new Set(help.match(/--[a-z][a-z-]+/g) ?? [])) {
      if (option === '--help') continue;
      expect(section, `docs/cli.md, jit ${name}: ${option} is missing`).toContain(option);
    }
  });
});
