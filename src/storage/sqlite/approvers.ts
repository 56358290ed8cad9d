import type { ApproverListRow, ApproverRow, ChallengeRow, ConsoleSessionRow, EnrolmentRow, PasskeyRow } from '../rows.ts';
import type { ApproversRepository, ChallengesRepository, ConsoleSessionsRepository, PasskeysRepository } from '../storage.ts';
import type { Db } from './open.ts';
import type { Sync } from './sync.ts';

const ACTIVE = 'approver_id IN (SELECT id FROM approvers WHERE removed_at IS NULL)';

export function sqliteApprovers(db: Db): Sync<ApproversRepository> {
  const s = {
    insert: db.prepare('INSERT INTO approvers (id, name, telegram_id, created_at, removed_at) VALUES (@id, @name, @telegram_id, @created_at, @removed_at)'),
    get: db.prepare('SELECT * FROM approvers WHERE id = ?'),
    byName: db.prepare('SELECT * FROM approvers WHERE name = ? AND removed_at IS NULL'),
    byTelegramId: db.prepare('SELECT * FROM approvers WHERE telegram_id = ? AND removed_at IS NULL'),
    list: db.prepare(`SELECT a.*,
        (SELECT COUNT(*) FROM passkeys p WHERE p.approver_id = a.id) AS passkeys,
        (SELECT COUNT(*) FROM console_sessions c WHERE c.approver_id = a.id) AS sessions
      FROM approvers a WHERE a.removed_at IS NULL ORDER BY a.name`),
    remove: db.prepare('UPDATE approvers SET removed_at = ? WHERE id = ? AND removed_at IS NULL'),
    dropSessions: db.prepare('DELETE FROM console_sessions WHERE approver_id = ?'),
    dropPasskeys: db.prepare('DELETE FROM passkeys WHERE approver_id = ?'),
    dropEnrolments: db.prepare('DELETE FROM enrolment_tokens WHERE approver_id = ?'),
    addEnrolment: db.prepare('INSERT INTO enrolment_tokens (token_hash, approver_id, created_at, expires_at, used_at) VALUES (@token_hash, @approver_id, @created_at, @expires_at, @used_at)'),
    enrolment: db.prepare(`SELECT * FROM enrolment_tokens WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? AND ${ACTIVE}`),
    consume: db.prepare(`UPDATE enrolment_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? AND ${ACTIVE} RETURNING approver_id`).pluck(),
    prune: db.prepare('DELETE FROM enrolment_tokens WHERE expires_at <= ? OR used_at IS NOT NULL'),
  };
  // The removal and the deletions as one step, also outside a transaction (a savepoint inside one).
  const remove = db.transaction((id: string, now: number): boolean => {
    if (s.remove.run(now, id).changes !== 1) return false;
    s.dropSessions.run(id);
    s.dropPasskeys.run(id);
    s.dropEnrolments.run(id);
    return true;
  });
  return {
    insert(row) {
      s.insert.run(row);
    },
    get: (id) => s.get.get(id) as ApproverRow | undefined,
    byName: (name) => s.byName.get(name) as ApproverRow | undefined,
    byTelegramId: (telegramId) => s.byTelegramId.get(telegramId) as ApproverRow | undefined,
    list: () => s.list.all() as ApproverListRow[],
    remove: (id, now) => remove(id, now),
    addEnrolment(row) {
      s.addEnrolment.run(row);
    },
    enrolment: (tokenHash, now) => s.enrolment.get(tokenHash, now) as EnrolmentRow | undefined,
    consumeEnrolment: (tokenHash, now) => s.consume.get(now, tokenHash, now) as string | undefined,
    pruneEnrolments: (now) => s.prune.run(now).changes,
  };
}

export function sqlitePasskeys(db: Db): Sync<PasskeysRepository> {
  const s = {
    insert: db.prepare(`INSERT INTO passkeys (id, approver_id, public_key, sign_count, transports, created_at, last_used_at)
      VALUES (@id, @approver_id, @public_key, @sign_count, @transports, @created_at, @last_used_at)`),
    get: db.prepare(`SELECT * FROM passkeys WHERE id = ? AND ${ACTIVE}`),
    of: db.prepare('SELECT * FROM passkeys WHERE approver_id = ? ORDER BY created_at, id'),
    use: db.prepare('UPDATE passkeys SET sign_count = ?, last_used_at = ? WHERE id = ? AND sign_count = ?'),
  };
  return {
    insert(row) {
      s.insert.run(row);
    },
    get: (id) => s.get.get(id) as PasskeyRow | undefined,
    of: (approverId) => s.of.all(approverId) as PasskeyRow[],
    use: (id, from, to, now) => s.use.run(to, now, id, from).changes === 1,
  };
}

export function sqliteConsoleSessions(db: Db): Sync<ConsoleSessionsRepository> {
  const s = {
    insert: db.prepare('INSERT INTO console_sessions (id_hash, approver_id, created_at, last_seen_at) VALUES (@id_hash, @approver_id, @created_at, @last_seen_at)'),
    get: db.prepare(`SELECT * FROM console_sessions WHERE id_hash = ? AND ${ACTIVE}`),
    touch: db.prepare('UPDATE console_sessions SET last_seen_at = ? WHERE id_hash = ?'),
    delete: db.prepare('DELETE FROM console_sessions WHERE id_hash = ?'),
    prune: db.prepare('DELETE FROM console_sessions WHERE last_seen_at <= ? OR created_at <= ?'),
  };
  return {
    insert(row) {
      s.insert.run(row);
    },
    get: (idHash) => s.get.get(idHash) as ConsoleSessionRow | undefined,
    touch: (idHash, now) => s.touch.run(now, idHash).changes === 1,
    delete: (idHash) => s.delete.run(idHash).changes === 1,
    prune: (idleBefore, createdBefore) => s.prune.run(idleBefore, createdBefore).changes,
  };
}

export function sqliteChallenges(db: Db): Sync<ChallengesRepository> {
  const s = {
    insert: db.prepare(`INSERT INTO webauthn_challenges (challenge_hash, purpose, approver_id, action_hash, created_at, expires_at)
      VALUES (@challenge_hash, @purpose, @approver_id, @action_hash, @created_at, @expires_at)`),
    // Used = deleted: one statement checks and uses, whoever races (another broker's connection, a prune).
    consume: db.prepare(`DELETE FROM webauthn_challenges
      WHERE challenge_hash = ? AND purpose = ? AND expires_at > ?
      RETURNING challenge_hash, purpose, approver_id, action_hash, created_at, expires_at`),
    prune: db.prepare('DELETE FROM webauthn_challenges WHERE expires_at <= ?'),
  };
  return {
    insert(row) {
      s.insert.run(row);
    },
    consume: (challengeHash, purpose, now) => s.consume.get(challengeHash, purpose, now) as ChallengeRow | undefined,
    prune: (now) => s.prune.run(now).changes,
  };
}
