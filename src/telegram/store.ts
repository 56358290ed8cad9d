import { randomBytes } from 'node:crypto';
import type { Db } from '../storage/sqlite/open.ts';
import type { RequestRow, RequestStatus } from '../broker/repository.ts';
import { EMPTY_DRAFT, type DraftNarrowing } from './narrowing-panel.ts';
import type { VoteView } from './render.ts';

export interface TelegramMessageRow {
  request_id: string;
  chat_id: string;
  message_id: number | null;
  claim_token: string | null;
  claimed_at: number | null;
  rendered_status: RequestStatus | null;
  rendered_hash: string | null;
  settled: 0 | 1;
  posted_at: number | null;
  edited_at: number | null;
}

/** An open narrowing panel (migration 0006). */
export interface NarrowingDraft {
  id: string;
  requestId: string;
  narrowing: DraftNarrowing;
  version: number;
  openedBy: string;
  updatedBy: string;
}

interface DraftRow {
  id: string;
  request_id: string;
  narrowing: string;
  version: number;
  opened_by: string;
  updated_by: string;
}

const toDraft = (r: DraftRow | undefined): NarrowingDraft | undefined =>
  r && { id: r.id, requestId: r.request_id, narrowing: { ...EMPTY_DRAFT, ...(JSON.parse(r.narrowing) as Partial<DraftNarrowing>) }, version: r.version, openedBy: r.opened_by, updatedBy: r.updated_by };

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
/** 10 random base32 characters (50 bits): a panel id for callback data. Authority never rests on it being secret. */
const draftId = () => [...randomBytes(10)].map((b) => BASE32[b & 31]).join('');

/**
 * The Telegram adapter's own tables (migrations 0004, 0006) plus read-only views
 * of votes and the audit log for rendering. Request state itself is never
 * written here: decisions go through decideRequest / revokeRequest.
 */
export function createTelegramStore(db: Db) {
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
    votes: db.prepare(`SELECT approver, decision, reason, at, grant_scope, grant_ttl_seconds FROM votes WHERE request_id = ? ORDER BY at, approver`),
    openDraft: db.prepare(`INSERT INTO telegram_narrowing (id, request_id, narrowing, version, opened_by, updated_by, created_at, updated_at)
      VALUES (@id, @request_id, @narrowing, 1, @by, @by, @now, @now) ON CONFLICT (request_id) DO NOTHING`),
    draftById: db.prepare(`SELECT * FROM telegram_narrowing WHERE id = ?`),
    draftByRequest: db.prepare(`SELECT * FROM telegram_narrowing WHERE request_id = ?`),
    updateDraft: db.prepare(`UPDATE telegram_narrowing SET narrowing = @narrowing, version = version + 1, updated_by = @by, updated_at = @now
      WHERE id = @id AND version = @version`),
    closeDraft: db.prepare(`DELETE FROM telegram_narrowing WHERE id = ?`),
    anyDraft: db.prepare(`SELECT 1 FROM telegram_narrowing LIMIT 1`),
    pruneDrafts: db.prepare(`DELETE FROM telegram_narrowing WHERE NOT EXISTS (SELECT 1 FROM requests r WHERE r.id = telegram_narrowing.request_id AND r.status = 'pending')`),
    revokedBy: db.prepare(`SELECT actor, at FROM audit_log WHERE request_id = ? AND event = 'request.revoked' ORDER BY seq DESC LIMIT 1`),
    upsertName: db.prepare(`INSERT INTO telegram_users (identity, name, updated_at) VALUES (?, ?, ?)
      ON CONFLICT (identity) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at WHERE telegram_users.name <> excluded.name`),
    names: db.prepare(`SELECT identity, name FROM telegram_users`),
  };

  return {
    /** Pending tier-2/3 requests with no message yet (or an abandoned claim), oldest first. */
    unposted(now: number, leaseMs: number, limit = 20): RequestRow[] {
      return s.unposted.all({ now, stale: now - leaseMs, limit }) as RequestRow[];
    },
    /**
     * Claims the right to post a request's message, so two bots on one
     * database never both post it. Returns the claim token, or undefined
     * when someone else holds a live claim or already posted.
     */
    claim(requestId: string, chatId: string, now: number, leaseMs: number): string | undefined {
      const token = randomBytes(8).toString('hex');
      const changed = s.claim.run({ id: requestId, chat: chatId, token, now, stale: now - leaseMs }).changes === 1;
      return changed ? token : undefined;
    },
    /** Records the posted message; false if the claim was lost meanwhile (the caller posted a duplicate). */
    posted(requestId: string, token: string, messageId: number, status: RequestStatus, hash: string, settled: boolean, now: number): boolean {
      return s.posted.run({ id: requestId, token, message_id: messageId, status, hash, settled: settled ? 1 : 0, now }).changes === 1;
    },
    release(requestId: string, token: string): void {
      s.release.run(requestId, token);
    },
    /**
     * Records a message that was posted but whose post was never recorded (the
     * poster died between Telegram's answer and its commit), found when an
     * approver taps it. It is re-rendered at the next pass. False if a message
     * is already recorded (or the claim is for another chat).
     */
    adopt(requestId: string, chatId: string, messageId: number, now: number): boolean {
      return s.adopt.run({ id: requestId, chat: chatId, message_id: messageId, now }).changes === 1;
    },
    /** Messages whose request may still change. */
    unsettled(limit = 200): TelegramMessageRow[] {
      return s.unsettled.all(limit) as TelegramMessageRow[];
    },
    /**
     * Records what a message now shows, if nobody recorded something else
     * since `previous` was read. When two bots edit the same message
     * concurrently the loser forgets the hash, so the next pass re-renders
     * and whichever edit Telegram applied last gets corrected.
     */
    rendered(requestId: string, previous: string | null, status: RequestStatus, hash: string, settled: boolean, now: number): boolean {
      const ok = s.rendered.run({ id: requestId, previous, status, hash, settled: settled ? 1 : 0, now }).changes === 1;
      if (!ok) s.invalidate.run(requestId);
      return ok;
    },
    get(requestId: string): TelegramMessageRow | undefined {
      return s.get.get(requestId) as TelegramMessageRow | undefined;
    },
    votes(requestId: string): VoteView[] {
      return s.votes.all(requestId) as VoteView[];
    },
    /** Opens the narrowing panel of a request, or returns the one already open (a repeated tap opens nothing new). */
    openDraft(requestId: string, by: string, now: number): NarrowingDraft {
      s.openDraft.run({ id: draftId(), request_id: requestId, narrowing: JSON.stringify(EMPTY_DRAFT), by, now });
      return toDraft(s.draftByRequest.get(requestId) as DraftRow)!;
    },
    draft(id: string): NarrowingDraft | undefined {
      return toDraft(s.draftById.get(id) as DraftRow | undefined);
    },
    draftFor(requestId: string): NarrowingDraft | undefined {
      return toDraft(s.draftByRequest.get(requestId) as DraftRow | undefined);
    },
    /** Stores a new choice if nobody changed the panel since `version` was read; false otherwise. */
    updateDraft(id: string, version: number, narrowing: DraftNarrowing, by: string, now: number): boolean {
      return s.updateDraft.run({ id, version, narrowing: JSON.stringify(narrowing), by, now }).changes === 1;
    },
    closeDraft(id: string): void {
      s.closeDraft.run(id);
    },
    /** Drops the panels of requests that are no longer pending. */
    pruneDrafts(): number {
      // Read first: most passes have no panel open, and a DELETE would take the write lock for nothing.
      if (s.anyDraft.get() === undefined) return 0;
      return s.pruneDrafts.run().changes;
    },
    revokedBy(requestId: string): { actor: string; at: number } | undefined {
      return s.revokedBy.get(requestId) as { actor: string; at: number } | undefined;
    },
    rememberName(identity: string, name: string, now: number): void {
      s.upsertName.run(identity, name, now);
    },
    names(): Map<string, string> {
      return new Map((s.names.all() as { identity: string; name: string }[]).map((r) => [r.identity, r.name]));
    },
  };
}

export type TelegramStore = ReturnType<typeof createTelegramStore>;
