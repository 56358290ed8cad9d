import { afterEach, describe, expect, it } from 'vitest';
import { addApprover, consumeEnrolmentIn, enrolmentApprover, ENROLMENT_TTL_MS, listApprovers, removeApprover, type ApproverDeps } from '../../../src/broker/approvers.ts';
import { createAuditLog } from '../../../src/broker/audit.ts';
import { BrokerError } from '../../../src/broker/errors.ts';
import { ManualClock } from '../../../src/lib/clock.ts';
import { createIdGenerator } from '../../../src/lib/ids.ts';
import { hashSecret } from '../../../src/lib/secrets.ts';
import { openPostgresStorage } from '../../../src/storage/postgres/index.ts';
import { openSqliteStorage } from '../../../src/storage/sqlite/index.ts';
import type { Storage } from '../../../src/storage/storage.ts';
import { freshPostgresDatabase } from '../../helpers/postgres.ts';

/** The approver verbs (src/broker/approvers.ts) on both engines. */
const engines: [string, () => Promise<Storage>][] = [
  ['sqlite', async () => openSqliteStorage(':memory:')],
  ['postgres', async () => openPostgresStorage(await freshPostgresDatabase('jit_apr'))],
];

describe.each(engines)('approver verbs (%s)', (_name, open) => {
  let storage: Storage | undefined;
  afterEach(async () => {
    await storage?.close();
    storage = undefined;
  });
  const start = async () => {
    storage = await open();
    const clock = new ManualClock(1_700_000_000_000);
    const deps: ApproverDeps = { storage, audit: createAuditLog(storage), clock, ids: createIdGenerator(() => clock.now()) };
    return { deps, clock, storage };
  };
  const code = (p: Promise<unknown>) => p.then(() => 'resolved', (e: unknown) => (e instanceof BrokerError ? e.code : String(e)));

  it('makes a URL-safe token of 32 characters, stored and audited only as a hash', async () => {
    const { deps, storage } = await start();
    const { approver, token, expiresAt } = await addApprover(deps, { name: 'alice', telegramId: '111' });
    expect(token).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(expiresAt - approver.createdAt).toBe(ENROLMENT_TTL_MS);
    const other = await addApprover(deps, { name: 'bob' });
    expect(other.token).not.toBe(token);
    expect(await storage.approvers.enrolment(hashSecret(token), approver.createdAt)).toMatchObject({ approver_id: approver.id });
    const audit = await storage.audit.page(0, 10);
    expect(audit.map((r) => r.event)).toEqual(['approver.added', 'approver.added']);
    expect(JSON.stringify(audit)).not.toContain(token);
    expect(JSON.parse(audit[0]!.data)).toMatchObject({ approver: 'alice', approver_id: approver.id, telegram_id: '111' });
  });

  it('refuses bad names and ids, taken names and ids, even when two adds race', async () => {
    const { deps } = await start();
    expect(await code(addApprover(deps, { name: 'Alice' }))).toBe('BAD_REQUEST');
    expect(await code(addApprover(deps, { name: 'a'.repeat(64) }))).toBe('BAD_REQUEST');
    expect(await code(addApprover(deps, { name: 'al', telegramId: '-5' }))).toBe('BAD_REQUEST');
    expect(await code(addApprover(deps, { name: 'al', telegramId: '12a' }))).toBe('BAD_REQUEST');
    const raced = await Promise.all([code(addApprover(deps, { name: 'carol' })), code(addApprover(deps, { name: 'carol' }))]);
    expect(raced.sort()).toEqual(['CONFLICT', 'resolved']);
    const byId = await Promise.all([code(addApprover(deps, { name: 'dan', telegramId: '7' })), code(addApprover(deps, { name: 'eve', telegramId: '7' }))]);
    const winner = byId[0] === 'resolved' ? 'dan' : 'eve';
    expect([...byId].sort()).toEqual(['CONFLICT', 'resolved']);
    expect((await listApprovers(deps)).map((a) => a.name)).toEqual(['carol', winner]);
  });

  it('enrols once within 15 minutes; removal ends sessions, passkeys and links in one audited step', async () => {
    const { deps, clock, storage } = await start();
    const { approver, token } = await addApprover(deps, { name: 'alice' });
    expect((await enrolmentApprover(deps, token))?.id).toBe(approver.id);
    expect(await enrolmentApprover(deps, `${token}x`)).toBeUndefined();
    expect(await enrolmentApprover(deps, 'short')).toBeUndefined();
    const enrolled = await storage.transaction(async (tx) => {
      const who = await consumeEnrolmentIn(tx, clock.now(), token);
      if (who) await tx.passkeys.insert({ id: 'cred_1', approver_id: who.id, public_key: 'pk', sign_count: 0, transports: '[]', created_at: clock.now(), last_used_at: null });
      return who;
    });
    expect(enrolled?.name).toBe('alice');
    expect(await storage.transaction((tx) => consumeEnrolmentIn(tx, clock.now(), token))).toBeUndefined();
    await storage.consoleSessions.insert({ id_hash: 'sh', approver_id: approver.id, created_at: clock.now(), last_seen_at: clock.now() });
    expect(await listApprovers(deps)).toMatchObject([{ name: 'alice', passkeys: 1, sessions: 1 }]);

    const late = await addApprover(deps, { name: 'bob' });
    clock.advance(ENROLMENT_TTL_MS);
    expect(await enrolmentApprover(deps, late.token)).toBeUndefined();

    expect(await removeApprover(deps, 'alice')).toMatchObject({ approver: { name: 'alice' }, sessionsEnded: 1, passkeysRemoved: 1 });
    expect(await removeApprover(deps, 'alice')).toBeUndefined();
    expect(await storage.consoleSessions.get('sh')).toBeUndefined();
    expect(await storage.passkeys.get('cred_1')).toBeUndefined();
    expect((await storage.audit.page(0, 10)).at(-1)).toMatchObject({ event: 'approver.removed', actor: 'operator' });
  });
});
