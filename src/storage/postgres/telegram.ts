import type { NarrowingDraftRow, RequestRow, TelegramMessageRow } from '../rows.ts';
import type { TelegramRepository } from '../storage.ts';
import { all, changedOne, one, sql, type Exec } from './exec.ts';

const DRAFT = 'id, request_id, narrowing, version, opened_by, updated_by';

const S = {
  unposted: sql('telegram_unposted', `SELECT r.* FROM requests r
    LEFT JOIN telegram_messages t ON t.request_id = r.id
    WHERE r.status = 'pending' AND r.required_tier >= 2
      AND (r.approval_expires_at IS NULL OR r.approval_expires_at > $1)
      AND (t.request_id IS NULL OR (t.message_id IS NULL AND t.claimed_at < $2))
    ORDER BY r.created_at LIMIT $3`),
  claim: sql('telegram_claim', `INSERT INTO telegram_messages (request_id, chat_id, claim_token, claimed_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (request_id) DO UPDATE SET chat_id = excluded.chat_id, claim_token = excluded.claim_token, claimed_at = excluded.claimed_at
    WHERE telegram_messages.message_id IS NULL AND telegram_messages.claimed_at < $5`),
  posted: sql('telegram_posted', `UPDATE telegram_messages SET message_id = $3, rendered_status = $4, rendered_hash = $5,
    settled = $6, posted_at = $7, edited_at = $7, claim_token = NULL
    WHERE request_id = $1 AND claim_token = $2 AND message_id IS NULL`),
  release: sql('telegram_release', 'DELETE FROM telegram_messages WHERE request_id = $1 AND claim_token = $2 AND message_id IS NULL'),
  adopt: sql('telegram_adopt', `UPDATE telegram_messages SET message_id = $3, rendered_hash = NULL, settled = 0, posted_at = $4, edited_at = $4,
    claim_token = NULL WHERE request_id = $1 AND chat_id = $2 AND message_id IS NULL`),
  unsettled: sql('telegram_unsettled', 'SELECT * FROM telegram_messages WHERE settled = 0 AND message_id IS NOT NULL ORDER BY posted_at LIMIT $1'),
  // The loser of a concurrent edit forgets the hash, so the next pass re-renders: one statement either way.
  rendered: sql('telegram_rendered', `WITH won AS (
      UPDATE telegram_messages SET rendered_status = $3, rendered_hash = $4, settled = $5, edited_at = $6
      WHERE request_id = $1 AND rendered_hash IS NOT DISTINCT FROM $2 RETURNING 1),
    lost AS (UPDATE telegram_messages SET rendered_hash = NULL, settled = 0 WHERE request_id = $1 AND NOT EXISTS (SELECT 1 FROM won) RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM won) AS won`),
  get: sql('telegram_get', 'SELECT * FROM telegram_messages WHERE request_id = $1'),
  openDraft: sql('telegram_open_draft', `WITH opened AS (
      INSERT INTO telegram_narrowing (id, request_id, narrowing, version, opened_by, updated_by, created_at, updated_at)
      VALUES ($1, $2, $3, 1, $4, $4, $5, $5) ON CONFLICT (request_id) DO NOTHING RETURNING ${DRAFT})
    SELECT * FROM opened UNION ALL SELECT ${DRAFT} FROM telegram_narrowing WHERE request_id = $2 AND NOT EXISTS (SELECT 1 FROM opened)`),
  draftById: sql('telegram_draft_by_id', `SELECT ${DRAFT} FROM telegram_narrowing WHERE id = $1`),
  draftByRequest: sql('telegram_draft_by_request', `SELECT ${DRAFT} FROM telegram_narrowing WHERE request_id = $1`),
  updateDraft: sql('telegram_update_draft', `UPDATE telegram_narrowing SET narrowing = $3, version = version + 1, updated_by = $4, updated_at = $5
    WHERE id = $1 AND version = $2`),
  closeDraft: sql('telegram_close_draft', 'DELETE FROM telegram_narrowing WHERE id = $1'),
  anyDraft: sql('telegram_any_draft', 'SELECT 1 FROM telegram_narrowing LIMIT 1'),
  pruneDrafts: sql('telegram_prune_drafts', `DELETE FROM telegram_narrowing WHERE NOT EXISTS
    (SELECT 1 FROM requests r WHERE r.id = telegram_narrowing.request_id AND r.status = 'pending')`),
  upsertName: sql('telegram_upsert_name', `INSERT INTO telegram_users (identity, name, updated_at) VALUES ($1, $2, $3)
    ON CONFLICT (identity) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at WHERE telegram_users.name <> excluded.name`),
  names: sql('telegram_names', `SELECT identity, name FROM telegram_users UNION ALL SELECT 'approver:' || id, name FROM approvers`),
};

export function pgTelegram(x: Exec): TelegramRepository {
  return {
    unposted: (now, staleBefore, limit) => all<RequestRow>(x.read(S.unposted, [now, staleBefore, limit])),
    claim: (requestId, chatId, token, now, staleBefore) => changedOne(x.write(S.claim, [requestId, chatId, token, now, staleBefore])),
    posted: (requestId, token, messageId, status, hash, settled, now) =>
      changedOne(x.write(S.posted, [requestId, token, messageId, status, hash, settled ? 1 : 0, now])),
    async release(requestId, token) {
      await x.write(S.release, [requestId, token]);
    },
    adopt: (requestId, chatId, messageId, now) => changedOne(x.write(S.adopt, [requestId, chatId, messageId, now])),
    unsettled: (limit) => all<TelegramMessageRow>(x.read(S.unsettled, [limit])),
    rendered: async (requestId, previous, status, hash, settled, now) =>
      (await one<{ won: boolean }>(x.write(S.rendered, [requestId, previous, status, hash, settled ? 1 : 0, now])))?.won === true,
    get: (requestId) => one<TelegramMessageRow>(x.read(S.get, [requestId])),
    openDraft: async (row) => (await one<NarrowingDraftRow>(x.write(S.openDraft, [row.id, row.request_id, row.narrowing, row.by, row.now]))) as NarrowingDraftRow,
    draft: (id) => one<NarrowingDraftRow>(x.read(S.draftById, [id])),
    draftFor: (requestId) => one<NarrowingDraftRow>(x.read(S.draftByRequest, [requestId])),
    updateDraft: (id, version, narrowing, by, now) => changedOne(x.write(S.updateDraft, [id, version, narrowing, by, now])),
    async closeDraft(id) {
      await x.write(S.closeDraft, [id]);
    },
    async pruneDrafts() {
      // Read first: most passes have no panel open, and a DELETE would take the write lock for nothing.
      if ((await x.read(S.anyDraft)).rows.length === 0) return 0;
      return (await x.write(S.pruneDrafts)).rowCount;
    },
    async rememberName(identity, name, now) {
      await x.write(S.upsertName, [identity, name, now]);
    },
    names: async () => new Map((await all<{ identity: string; name: string }>(x.read(S.names))).map((r) => [r.identity, r.name])),
  };
}
