import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAuditLog } from '../../../src/broker/audit.ts';
import type { CliIo } from '../../../src/lib/cli-io.ts';
import { COMMAND_NAMES, runCli } from '../../../src/cli/main.ts';
import { endsWithTest, JIT_BIN, runJit } from '../../helpers/cli.ts';
import { openSqliteStorage } from '../../../src/storage/sqlite/index.ts';

const REPO = join(import.meta.dirname, '..', '..', '..');

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
    expect(await jit(['help', '--version'])).toEqual(res);
  });

  it('no command at all is wrong use: one line pointing at --help, exit 2', async () => {
    const res = await jit([]);
    expect(res.code).toBe(2);
    expect(res.stdout).toBe('');
    expect(res.stderr).toBe('jit: missing command (usage: jit <command> [options]; "jit --help" lists the commands)');
  });

  it.each([
    ['reqests', 'requests'],
    ['aprove', 'approve'],
    ['Keys', 'keys'],
  ])('an unknown command %s gets one line with the suggestion %s, exit 2', async (typo, meant) => {
    const res = await jit([typo, 'req_x']);
    expect(res).toEqual({ code: 2, stdout: '', stderr: `jit: unknown command "${typo}"; did you mean "${meant}"?` });
  });

  it('an unknown option of jit itself gets the same, exit 2', async () => {
    expect(await jit(['--verison'])).toEqual({ code: 2, stdout: '', stderr: 'jit: unknown option "--verison"; did you mean "--version"?' });
  });

  it('an unknown command with nothing close gets one line pointing at --help, exit 2', async () => {
    const res = await jit(['frobnicate']);
    expect(res).toEqual({ code: 2, stdout: '', stderr: 'jit: unknown command "frobnicate"; "jit --help" lists the commands' });
  });
});

describe('jit --version', () => {
  const version = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

  it.each(['--version', '-V'])('jit %s prints the package version and nothing else', async (flag) => {
    expect(version).toMatch(/^\d+\.\d+\.\d+/);
    expect(await jit([flag])).toEqual({ code: 0, stdout: version, stderr: '' });
  });

  it('as a process, through bin/jit.mjs', async () => {
    expect(await runJit(['--version'], env)).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' });
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
    ['approver'],
    ['approver', 'add'],
    ['approver', 'add', 'ann', '--telegram-id', 'ann'],
    ['approver', 'list', '--telegram-id', '1'],
    ['approver', 'remove'],
    ['approver', 'fire', 'ann'],
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
    ['requests', '--bogus'],
    ['audit', 'verify', '--limit', '3'],
  ])('jit %s', async (...args) => {
    const res = await jit(args);
    expect(res.code, res.stderr).toBe(2);
    expect(res.stdout).toBe('');
    const name = args[0]!;
    expect(res.stderr).toMatch(new RegExp(`^jit ${name}: \\S`));
    expect(res.stderr).toContain(`"jit ${name} --help"`);
    expect(res.stderr.split('\n'), 'one line, not the whole help').toHaveLength(1);
  });

  it('an unknown option is named in one short line', async () => {
    const res = await jit(['requests', '--bogus']);
    expect(res).toEqual({ code: 2, stdout: '', stderr: 'jit requests: unknown option "--bogus" (see "jit requests --help")' });
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

describe('output closed early (jit audit export | head -1)', () => {
  it('stops quietly at the first write after the reader is gone: exit 141, no EPIPE, no stack', async () => {
    // ~1.3 MB of JSON Lines: far more than a pipe buffers, so the export is
    // still writing when the reader goes away.
    const storage = openSqliteStorage(env.JIT_DB!);
    try {
      const audit = createAuditLog(storage);
      await storage.transaction(async (tx) => {
        for (let i = 0; i < 5000; i++) await audit.append(tx, { event: 'request.created', actor: 'agent:epipe', requestId: `req_${i}`, data: { n: i, pad: 'x'.repeat(160) } }, 1_000 + i);
      });
    } finally {
      await storage.close();
    }
    const child = spawn(process.execPath, [JIT_BIN, 'audit', 'export'], { cwd: REPO, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    endsWithTest(child);
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const first = await new Promise<string>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(d.toString())));
    // What `head -1` does once it has its line: close the read end.
    child.stdout.destroy();
    const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
    expect(first).toMatch(/^\{"seq":1,/);
    expect(stderr).toBe('');
    expect(code).toBe(141);
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
