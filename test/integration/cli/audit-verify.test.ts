import Database from 'better-sqlite3';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KEY_FILE_NAME, createKeyRing } from '../../../src/keys/key-ring.ts';
import { startHarness } from '../../helpers/broker-harness.ts';
import { runJit } from '../../helpers/cli.ts';

/**
 * A broker runs, writes some audit entries and stops (which signs the chain
 * head); then `jit audit verify`, as a child process, checks copies of its
 * database, some tampered with by plain SQL as an attacker with the file would.
 */
let root: string;
let lastSeq: number;
let jwks: unknown;
beforeAll(async () => {
  const h = await startHarness();
  jwks = h.broker.deps.keys.jwks();
  try {
    const token = await h.addAgent('moltbot');
    const body = { resource: 'vault', tier: 1, reason: 'r', vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }] };
    for (let i = 0; i < 3; i++) expect((await h.call('POST', '/jit/request', { token, body })).status).toBe(201);
    // Five refusals: one audited in full, four counted in a window the stop must close.
    const denied = { ...body, vault_paths: [{ path: 'sys/policies/acl/root', capabilities: ['read'] }] };
    for (let i = 0; i < 5; i++) expect((await h.call('POST', '/jit/request', { token, body: denied })).status).toBe(403);
  } finally {
    await h.broker.stop();
    await h.proxy.close();
    await h.devVault.close();
  }
  root = mkdtempSync(join(tmpdir(), 'jit-audit-verify-'));
  for (const name of ['intact', 'truncated', 'forged']) {
    mkdirSync(join(root, name));
    copyFileSync(join(h.dir, 'jit.db'), join(root, name, 'jit.db'));
    copyFileSync(join(h.dir, KEY_FILE_NAME), join(root, name, KEY_FILE_NAME));
  }
  rmSync(h.dir, { recursive: true, force: true });
  writeFileSync(join(root, 'jwks.json'), JSON.stringify(jwks));
  writeFileSync(join(root, 'other-jwks.json'), JSON.stringify(createKeyRing({ config: { dbPath: ':memory:', signingKey: undefined } }).jwks()));
  const db = new Database(join(root, 'intact', 'jit.db'), { readonly: true });
  lastSeq = db.prepare('SELECT MAX(seq) FROM audit_log').pluck().get() as number;
  const signed = db.prepare('SELECT MAX(seq) FROM audit_heads').pluck().get() as number;
  db.close();
  // The shutdown signed the last entry.
  expect(signed).toBe(lastSeq);
  tamper('truncated', `DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq > ${lastSeq - 2}`);
  tamper('forged', `DROP TRIGGER audit_heads_no_update; UPDATE audit_heads SET signature = '${Buffer.alloc(64, 7).toString('base64url')}'`);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const env = (name: string) => ({ JIT_DB: join(root, name, 'jit.db'), JIT_POLICIES: join(import.meta.dirname, '..', '..', '..', 'policies') });

function tamper(name: string, sql: string) {
  const db = new Database(join(root, name, 'jit.db'));
  db.exec(sql);
  db.close();
}

describe('jit audit verify with signed heads', () => {
  it('the broker’s stop wrote the open window’s count, then signed the head over it', () => {
    const db = new Database(join(root, 'intact', 'jit.db'), { readonly: true });
    const last = db.prepare('SELECT event, data FROM audit_log WHERE seq = ?').get(lastSeq) as { event: string; data: string };
    db.close();
    expect(last.event).toBe('audit.suppressed');
    expect(JSON.parse(last.data)).toMatchObject({ event: 'request.rejected', suppressed: 4 });
  });

  it('exits 0 on an intact chain and says which signed head it checked', async () => {
    const res = await runJit(['audit', 'verify'], env('intact'));
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(res.stdout).toContain(`audit log intact: ${lastSeq} entries`);
    expect(res.stdout).toMatch(new RegExp(`newest signed head: entry ${lastSeq}, `));
  });

  it('exits 1 naming the signed head when entries were deleted from the end', async () => {
    const res = await runJit(['audit', 'verify'], env('truncated'));
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(`audit log TAMPERED at entry ${lastSeq - 1}: entries missing after entry ${lastSeq - 2} (signed head seq ${lastSeq}, `);
  });

  it('exits 1 on a forged head signature', async () => {
    const res = await runJit(['audit', 'verify'], env('forged'));
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/signed head for entry \d+ .*invalid signature/);
  });

  it('--jwks checks the heads against public keys kept elsewhere instead of the key file beside the database', async () => {
    const res = await runJit(['audit', 'verify', '--jwks', join(root, 'jwks.json')], env('truncated'));
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(`entries missing after entry ${lastSeq - 2}`);
  });

  it('--jwks with keys that never signed these heads: they vouch for nothing, and the cut chain alone looks whole', async () => {
    const res = await runJit(['audit', 'verify', '--jwks', join(root, 'other-jwks.json')], env('truncated'));
    expect(res.code).toBe(0);
    expect(res.stderr).toMatch(/note: \d+ signed head\(s\) not checked/);
    expect(res.stdout).toContain('no signed head checked');
  });

  it('--jwks refuses a file that is not a JWKS (exit 2)', async () => {
    const res = await runJit(['audit', 'verify', '--jwks', join(root, 'intact', 'jit.db')], env('intact'));
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('not a JWKS of Ed25519 public keys');
  });
});
