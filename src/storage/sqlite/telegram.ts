import type { NarrowingDraftRow, RequestRow, TelegramMessageRow } from '../rows.ts';
import type { TelegramRepository } from '../storage.ts';
import type { Db } from './open.ts';
import type { Sync } from './sync.ts';

export function sqliteTelegram(db: Db): Sync<TelegramRepository> {
  const s = {
    unposted: db.prepare(`SELECT r.* FROM requests r
      LEFT JOIN telegram_messages t ON t.request_id = r.id
      WHERE r.status = 'pending' AND r.required_tier >= 2
        AND (r.approval_expires_at IS NULL OR r.approval_expires_at > @now)
        AND (t.request_id IS NULL OR (t.message_id IS NULL AND t.claimed_at < @stale))
      ORDER BY r.created_at LIMIT @limit`),
    claim: db.prepare(`INSERT INTO telegram_messages (request_id, chat_id, claim_token, claimed_at) VALUES (@id, @chat, @token, @now)
      ON CONFLICT (request_id) DO UPDATE SET chat_id = excluded.chat_id, claim_token = excluded.claim_token, claimed_at = excluded.claimed_at
      WHERE telegram_messages.message_id IS NULL AND telegram_messages.claimed_at < @stale`),
    posted: db.prepare(`UPDATE telegram_messages SET message_id = @message_id, rendered_status = @status, rendered_hash = @hash,
      settled = @settled, posted_at = @now, edited_at = @now, claim_token = NULL
      WHERE request_id = @id AND claim_token = @token AND message_id IS NULL`),
    release: db.prepare(`DELETE FROM telegram_messages WHERE request_id = ? AND claim_token = ? AND message_id IS NULL`),
    adopt: db.prepare(`UPDATE telegram_messages SET message_id = @message_id, rendered_hash = NULL, settled = 0, posted_at = @now, edited_at = @now,
      claim_token = NULL WHERE request_id = @id AND chat_id = @chat AND message_id IS NULL`),
    unsettled: db.prepare(`SELECT * FROM telegram_messages WHERE settled = 0 AND message_id IS NOT NULL ORDER BY posted_at LIMIT ?`),
    rendered: db.prepare(`UPDATE telegram_messages SET rendered_status = @status, rendered_hash = @hash, settled = @settled, edited_at = @now
      WHERE request_id = @id AND rendered_hash IS @previous`),
    invalidate: db.prepare(`UPDATE telegram_messages SET rendered_hash = NULL, settled = 0 WHERE request_id = ?`),
    get: db.prepare(`SELECT * FROM telegram_messages WHERE request_id = ?`),
    openDraft: db.prepare(`INSERT INTO telegram_narrowing (id, request_id, narrowing, version, opened_by, updated_by, created_at, updated_at)
      VALUES (@id, @request_id, @narrowing, 1, @by, @by, @now, @now) ON CONFLICT (request_id) DO NOTHING`),
    draftById: db.prepare(`SELECT id, request_id, narrowing, version, opened_by, updated_by FROM telegram_narrowing WHERE id = ?`),
    draftByRequest: db.prepare(`SELECT id, request_id, narrowing, version, opened_by, updated_by FROM telegram_narrowing WHERE request_id = ?`),
    updateDraft: db.prepare(`UPDATE telegram_narrowing SET narrowing = @narrowing, version = version + 1, updated_by = @by, updated_at = @now
      WHERE id = @id AND version = @version`),
    closeDraft: db.prepare(`DELETE FROM telegram_narrowing WHERE id = ?`),
    anyDraft: db.prepare(`SELECT 1 FROM telegram_narrowing LIMIT 1`),
    pruneDrafts: db.prepare(`DELETE FROM telegram_narrowing WHERE NOT EXISTS (SELECT 1 FROM requests r WHERE r.id = telegram_narrowing.request_id AND r.status = 'pending')`),
    upsertName: db.prepare(`INSERT INTO telegram_users (identity, name, updated_at) VALUES (?, ?, ?)
      ON CONFLICT (identity) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at WHERE telegram_users.name <> excluded.name`),
    names: db.prepare(`SELECT identity, name FROM telegram_users UNION ALL SELECT 'approver:' || id, name FROM approvers`),
  };
  return {
    unposted: (now, staleBefore, limit) => s.unposted.all({ now, stale: staleBefore, limit }) as RequestRow[],
    claim: (requestId, chatId, token, now, staleBefore) => s.claim.run({ id: requestId, chat: chatId, token, now, stale: staleBefore }).changes === 1,
    posted: (requestId, token, messageId, status, hash, settled, now) =>
      s.posted.run({ id: requestId, token, message_id: messageId, status, hash, settled: settled ? 1 : 0, now }).changes === 1,
    release(requestId, token) {
      s.release.run(requestId, token);
    },
    adopt: (requestId, chatId, messageId, now) => s.adopt.run({ id: requestId, chat: chatId, message_id: messageId, now }).changes === 1,
    unsettled: (limit) => s.unsettled.all(limit) as TelegramMessageRow[],
    rendered(requestId, previous, status, hash, settled, now) {
      const ok = s.rendered.run({ id: requestId, previous, status, hash, settled: settled ? 1 : 0, now }).changes === 1;
      // The loser of a concurrent edit forgets the hash, so the next pass re-renders.
      if (!ok) s.invalidate.run(requestId);
      return ok;
    },
    get: (requestId) => s.get.get(requestId) as TelegramMessageRow | undefined,
    openDraft(row) {
      s.openDraft.run(row);
      return s.draftByRequest.get(row.request_id) as NarrowingDraftRow;
    },
    draft: (id) => s.draftById.get(id) as NarrowingDraftRow | undefined,
    draftFor: (requestId) => s.draftByRequest.get(requestId) as NarrowingDraftRow | undefined,
    updateDraft: (id, version, narrowing, by, now) => s.updateDraft.run({ id, version, narrowing, by, now }).changes === 1,
    closeDraft(id) {
      s.closeDraft.run(id);
    },
    pruneDrafts() {
      // Read first: most passes have no panel open, and a DELETE would take the write lock for nothing.
      if (s.anyDraft.get() === undefined) return 0;
      return s.pruneDrafts.run().changes;
    },
    rememberName(identity, name, now) {
      s.upsertName.run(identity, name, now);
    },
    names: () => new Map((s.names.all() as { identity: string; name: string }[]).map((r) => [r.identity, r.name])),
  };
}
