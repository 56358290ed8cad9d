import type { ApproverListRow, ApproverRow, ChallengeRow, ConsoleSessionRow, EnrolmentRow, PasskeyRow } from '../rows.ts';
import type { ApproversRepository, ChallengesRepository, ConsoleSessionsRepository, PasskeysRepository } from '../storage.ts';
import { all, changedOne, count, one, sql, type Exec } from './exec.ts';

const ACTIVE = 'approver_id IN (SELECT id FROM approvers WHERE removed_at IS NULL)';

const A = {
  insert: sql('approvers_insert', 'INSERT INTO approvers (id, name, telegram_id, created_at, removed_at) VALUES ($1, $2, $3, $4, $5)'),
  get: sql('approvers_get', 'SELECT * FROM approvers WHERE id = $1'),
  byName: sql('approvers_by_name', 'SELECT * FROM approvers WHERE name = $1 AND removed_at IS NULL'),
  byTelegramId: sql('approvers_by_telegram_id', 'SELECT * FROM approvers WHERE telegram_id = $1 AND removed_at IS NULL'),
  list: sql('approvers_list', `SELECT a.*,
      (SELECT COUNT(*) FROM passkeys p WHERE p.approver_id = a.id) AS passkeys,
      (SELECT COUNT(*) FROM console_sessions c WHERE c.approver_id = a.id) AS sessions
    FROM approvers a WHERE a.removed_at IS NULL ORDER BY a.name`),
  // One statement: the removal and the deletions commit together, inside a transaction or not.
  remove: sql('approvers_remove', `WITH gone AS (UPDATE approvers SET removed_at = $2 WHERE id = $1 AND removed_at IS NULL RETURNING id),
      s AS (DELETE FROM console_sessions WHERE approver_id IN (SELECT id FROM gone)),
      p AS (DELETE FROM passkeys WHERE approver_id IN (SELECT id FROM gone)),
      e AS (DELETE FROM enrolment_tokens WHERE approver_id IN (SELECT id FROM gone))
    SELECT COUNT(*) AS n FROM gone`),
  addEnrolment: sql('enrolments_insert', 'INSERT INTO enrolment_tokens (token_hash, approver_id, created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5)'),
  enrolment: sql('enrolments_get', `SELECT * FROM enrolment_tokens WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 AND ${ACTIVE}`),
  consume: sql('enrolments_consume', `UPDATE enrolment_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 AND ${ACTIVE} RETURNING approver_id`),
  prune: sql('enrolments_prune', 'DELETE FROM enrolment_tokens WHERE expires_at <= $1 OR used_at IS NOT NULL'),
};

export function pgApprovers(x: Exec): ApproversRepository {
  return {
    async insert(row) {
      await x.write(A.insert, [row.id, row.name, row.telegram_id, row.created_at, row.removed_at]);
    },
    get: (id) => one<ApproverRow>(x.read(A.get, [id])),
    byName: (name) => one<ApproverRow>(x.read(A.byName, [name])),
    byTelegramId: (telegramId) => one<ApproverRow>(x.read(A.byTelegramId, [telegramId])),
    list: () => all<ApproverListRow>(x.read(A.list)),
    remove: async (id, now) => (await count(x.write(A.remove, [id, now]))) === 1,
    async addEnrolment(row) {
      await x.write(A.addEnrolment, [row.token_hash, row.approver_id, row.created_at, row.expires_at, row.used_at]);
    },
    enrolment: (tokenHash, now) => one<EnrolmentRow>(x.read(A.enrolment, [tokenHash, now])),
    consumeEnrolment: async (tokenHash, now) => (await one<{ approver_id: string }>(x.write(A.consume, [tokenHash, now])))?.approver_id,
    pruneEnrolments: async (now) => (await x.write(A.prune, [now])).rowCount,
  };
}

const P = {
  insert: sql('passkeys_insert', `INSERT INTO passkeys (id, approver_id, public_key, sign_count, transports, created_at, last_used_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7)`),
  get: sql('passkeys_get', `SELECT * FROM passkeys WHERE id = $1 AND ${ACTIVE}`),
  of: sql('passkeys_of', 'SELECT * FROM passkeys WHERE approver_id = $1 ORDER BY created_at, id'),
  use: sql('passkeys_use', 'UPDATE passkeys SET sign_count = $3, last_used_at = $4 WHERE id = $1 AND sign_count = $2'),
};

export function pgPasskeys(x: Exec): PasskeysRepository {
  return {
    async insert(row) {
      await x.write(P.insert, [row.id, row.approver_id, row.public_key, row.sign_count, row.transports, row.created_at, row.last_used_at]);
    },
    get: (id) => one<PasskeyRow>(x.read(P.get, [id])),
    of: (approverId) => all<PasskeyRow>(x.read(P.of, [approverId])),
    use: (id, from, to, now) => changedOne(x.write(P.use, [id, from, to, now])),
  };
}

const C = {
  insert: sql('console_sessions_insert', 'INSERT INTO console_sessions (id_hash, approver_id, created_at, last_seen_at) VALUES ($1, $2, $3, $4)'),
  get: sql('console_sessions_get', `SELECT * FROM console_sessions WHERE id_hash = $1 AND ${ACTIVE}`),
  touch: sql('console_sessions_touch', 'UPDATE console_sessions SET last_seen_at = $2 WHERE id_hash = $1'),
  delete: sql('console_sessions_delete', 'DELETE FROM console_sessions WHERE id_hash = $1'),
  prune: sql('console_sessions_prune', 'DELETE FROM console_sessions WHERE last_seen_at <= $1 OR created_at <= $2'),
};

export function pgConsoleSessions(x: Exec): ConsoleSessionsRepository {
  return {
    async insert(row) {
      await x.write(C.insert, [row.id_hash, row.approver_id, row.created_at, row.last_seen_at]);
    },
    get: (idHash) => one<ConsoleSessionRow>(x.read(C.get, [idHash])),
    touch: (idHash, now) => changedOne(x.write(C.touch, [idHash, now])),
    delete: (idHash) => changedOne(x.write(C.delete, [idHash])),
    prune: async (idleBefore, createdBefore) => (await x.write(C.prune, [idleBefore, createdBefore])).rowCount,
  };
}

const W = {
  insert: sql('challenges_insert', `INSERT INTO webauthn_challenges (challenge_hash, purpose, approver_id, action_hash, created_at, expires_at)
    VALUES ($1, $2, $3, $4, $5, $6)`),
  // Used = deleted: one statement checks and uses, whoever races (another broker, a prune).
  consume: sql('challenges_consume', `DELETE FROM webauthn_challenges
    WHERE challenge_hash = $1 AND purpose = $2 AND expires_at > $3
    RETURNING challenge_hash, purpose, approver_id, action_hash, created_at, expires_at`),
  prune: sql('challenges_prune', 'DELETE FROM webauthn_challenges WHERE expires_at <= $1'),
};

export function pgChallenges(x: Exec): ChallengesRepository {
  return {
    async insert(row) {
      await x.write(W.insert, [row.challenge_hash, row.purpose, row.approver_id, row.action_hash, row.created_at, row.expires_at]);
    },
    consume: (challengeHash, purpose, now) => one<ChallengeRow>(x.write(W.consume, [challengeHash, purpose, now])),
    prune: async (now) => (await x.write(W.prune, [now])).rowCount,
  };
}
