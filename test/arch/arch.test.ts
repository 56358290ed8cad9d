import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The architecture self-check (scripts/lint-arch.mjs, rules in .dependency-cruiser.cjs;
 * docs/architecture.md, "Allowed arrows"), run as `npm run lint:arch` runs it: a child
 * process, judged by its exit code and its report.
 */
const repo = fileURLToPath(new URL('../..', import.meta.url));
const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

function lintArch(root?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const args = ['scripts/lint-arch.mjs', ...(root ? ['--root', root] : [])];
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { cwd: repo }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') return reject(err);
      resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
    });
  });
}

/** `file:line  rule  message` lines of a report. */
function violations(report: string): Array<{ file: string; line: number; rule: string; message: string }> {
  return [...report.matchAll(/^(\S+):(\d+) {2}(\S+) {2}(.*)$/gm)].map((m) => ({ file: m[1]!, line: Number(m[2]), rule: m[3]!, message: m[4]! }));
}

describe('architecture self-check', () => {
  it('src/ follows the allowed arrows: no cycle, no broker → adapter, no adapter → adapter, no lower layer → broker, agent side → wire/lib/client only, SQL and better-sqlite3 only in src/storage/', async () => {
    const { code, stdout, stderr } = await lintArch();
    // On failure the report names each file and line, and what to do.
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toMatch(/follows the allowed arrows/);
  });

  it('reports each kind of violation in a broken tree, with its file and line', async () => {
    const { code, stderr } = await lintArch(fixture('broken'));
    expect(code).toBe(1);
    expect(violations(stderr)).toEqual([
      { file: 'src/http/route.ts', line: 2, rule: 'adapters-do-not-import-each-other', message: 'imports src/telegram/bot.ts' },
      { file: 'src/agent/command.ts', line: 2, rule: 'agent-commands-import-only-the-agent-side', message: 'imports src/broker/verb.ts' },
      { file: 'src/client/types.ts', line: 2, rule: 'agent-side-imports-only-wire-lib-client', message: 'imports src/broker/verb.ts' },
      { file: 'src/broker/store.ts', line: 2, rule: 'better-sqlite3-only-in-storage', message: 'imports better-sqlite3' },
      { file: 'src/broker/verb.ts', line: 2, rule: 'broker-imports-no-adapter', message: 'imports src/http/route.ts' },
      { file: 'src/broker/verb.ts', line: 3, rule: 'broker-imports-no-adapter', message: 'imports src/create-deps.ts' },
      { file: 'src/broker/verb.ts', line: 4, rule: 'broker-imports-no-adapter', message: 'imports src/served-app.ts' },
      { file: 'src/cli/command.ts', line: 3, rule: 'cli-imports-no-other-adapter', message: 'imports src/webhooks/dispatcher.ts' },
      { file: 'src/keys/ring.ts', line: 2, rule: 'keys-are-shared-not-an-adapter', message: 'imports src/webhooks/dispatcher.ts' },
      { file: 'src/metrics/instrument.ts', line: 2, rule: 'lower-layers-import-nothing-above', message: 'imports src/broker/verb.ts' },
      // Closed by a type-only import (two.ts → one.ts): type imports count.
      { file: 'src/lib/one.ts', line: 2, rule: 'no-circular', message: 'cycle src/lib/one.ts → src/lib/two.ts → src/lib/one.ts' },
      { file: 'src/broker/store.ts', line: 5, rule: 'sql-only-in-storage', message: 'SQL: "status = ?"' },
      { file: 'src/broker/store.ts', line: 6, rule: 'sql-only-in-storage', message: 'SQL: "SELECT * FROM requests WHERE id = ? ${…}"' },
      { file: 'src/broker/store.ts', line: 11, rule: 'sql-only-in-storage', message: 'SQL: "UPDATE requests SET status = ? WHERE id = ?"' },
      { file: 'src/broker/store.ts', line: 13, rule: 'sql-only-in-storage', message: 'SQL: "foreign_keys = ON"' },
      { file: 'src/db/0001_init.sql', line: 1, rule: 'sql-only-in-storage', message: 'an SQL file' },
      { file: 'src/wire/schemas.ts', line: 2, rule: 'wire-is-zod-only', message: 'imports hono' },
    ]);
    // What to do, once per rule.
    expect(stderr).toMatch(/^sql-only-in-storage: SQL lives only in src\/storage\//m);
    expect(stderr).toMatch(/^no-circular: An import cycle in src\//m);
    expect(stderr).toMatch(/lint:arch: 17 violation\(s\)/);
  });

  it('passes a tree that uses only the allowed arrows (SQL in storage, prose naming SQL words, cli → agent/client/outbox, agent → client/mcp/lib, wire → zod and lib, lower layers → each other, mcp → client/wire/lib, the composition root)', async () => {
    const { code, stdout, stderr } = await lintArch(fixture('clean'));
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toMatch(/fixtures\/clean\/src follows the allowed arrows/);
  });
});
