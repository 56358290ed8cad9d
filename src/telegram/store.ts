import { randomBytes } from 'node:crypto';
import type { NarrowingDraftRow, RequestRow, RequestStatus, TelegramMessageRow } from '../storage/rows.ts';
import type { Storage, Transaction } from '../storage/storage.ts';
import { EMPTY_DRAFT, type DraftNarrowing } from './narrowing-panel.ts';
import type { VoteView } from './render.ts';

export type { TelegramMessageRow };

/** An open narrowing panel (migration 0006). */
export interface NarrowingDraft {
  id: string;
  requestId: string;
  narrowing: DraftNarrowing;
  version: number;
  openedBy: string;
  updatedBy: string;
}

const toDraft = (r: NarrowingDraftRow | undefined): NarrowingDraft | undefined =>
  r && { id: r.id, requestId: r.request_id, narrowing: { ...EMPTY_DRAFT, ...(JSON.parse(r.narrowing) as Partial<DraftNarrowing>) }, version: r.version, openedBy: r.opened_by, updatedBy: r.updated_by };

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
/** 10 random base32 characters (50 bits): a panel id for callback data. Authority never rests on it being secret. */
const draftId = () => [...randomBytes(10)].map((b) => BASE32[b & 31]).join('');

/**
 * The Telegram adapter's own tables (migrations 0004, 0006) plus read-only views
 * of votes and the audit log for rendering, through the storage interface.
 * Request state itself is never written here: decisions go through
 * decideRequest / revokeRequest. Methods that take a `tx` run in the
 * caller's transaction (the panel's "Approve as shown").
 */
export function createTelegramStore(storage: Storage) {
  const t = storage.telegram;
  return {
    /** Pending tier-2/3 requests with no message yet (or an abandoned claim), oldest first. */
    unposted(now: number, leaseMs: number, limit = 20): Promise<RequestRow[]> {
      return t.unposted(now, now - leaseMs, limit);
    },
    /**
     * Claims the right to post a request's message, so two bots on one
     * database never both post it. Returns the claim token, or undefined
     * when someone else holds a live claim or already posted.
     */
    async claim(requestId: string, chatId: string, now: number, leaseMs: number): Promise<string | undefined> {
      const token = randomBytes(8).toString('hex');
      return (await t.claim(requestId, chatId, token, now, now - leaseMs)) ? token : undefined;
    },
    /** Records the posted message; false if the claim was lost meanwhile (the caller posted a duplicate). */
    posted(requestId: string, token: string, messageId: number, status: RequestStatus, hash: string, settled: boolean, now: number): Promise<boolean> {
      return t.posted(requestId, token, messageId, status, hash, settled, now);
    },
    release(requestId: string, token: string): Promise<void> {
      return t.release(requestId, token);
    },
    /**
     * Records a message that was posted but whose post was never recorded (the
     * poster died between Telegram's answer and its commit), found when an
     * approver taps it. It is re-rendered at the next pass. False if a message
     * is already recorded (or the claim is for another chat).
     */
    adopt(requestId: string, chatId: string, messageId: number, now: number): Promise<boolean> {
      return t.adopt(requestId, chatId, messageId, now);
    },
    /** Messages whose request may still change. */
    unsettled(limit = 200): Promise<TelegramMessageRow[]> {
      return t.unsettled(limit);
    },
    /**
     * Records what a message now shows, if nobody recorded something else
     * since `previous` was read. When two bots edit the same message
     * concurrently the loser forgets the hash, so the next pass re-renders
     * and whichever edit Telegram applied last gets corrected.
     */
    rendered(requestId: string, previous: string | null, status: RequestStatus, hash: string, settled: boolean, now: number): Promise<boolean> {
      return t.rendered(requestId, previous, status, hash, settled, now);
    },
    get(requestId: string): Promise<TelegramMessageRow | undefined> {
      return t.get(requestId);
    },
    votes(requestId: string, tx?: Transaction): Promise<VoteView[]> {
      return (tx ?? storage).votes.of(requestId);
    },
    /** Opens the narrowing panel of a request, or returns the one already open (a repeated tap opens nothing new). */
    async openDraft(requestId: string, by: string, now: number): Promise<NarrowingDraft> {
      return toDraft(await t.openDraft({ id: draftId(), request_id: requestId, narrowing: JSON.stringify(EMPTY_DRAFT), by, now }))!;
    },
    async draft(id: string, tx?: Transaction): Promise<NarrowingDraft | undefined> {
      return toDraft(await (tx ?? storage).telegram.draft(id));
    },
    async draftFor(requestId: string): Promise<NarrowingDraft | undefined> {
      return toDraft(await t.draftFor(requestId));
    },
    /** Stores a new choice if nobody changed the panel since `version` was read; false otherwise. */
    updateDraft(id: string, version: number, narrowing: DraftNarrowing, by: string, now: number, tx?: Transaction): Promise<boolean> {
      return (tx ?? storage).telegram.updateDraft(id, version, JSON.stringify(narrowing), by, now);
    },
    closeDraft(id: string, tx?: Transaction): Promise<void> {
      return (tx ?? storage).telegram.closeDraft(id);
    },
    /** Drops the panels of requests that are no longer pending. */
    pruneDrafts(): Promise<number> {
      return t.pruneDrafts();
    },
    revokedBy(requestId: string): Promise<{ actor: string; at: number } | undefined> {
      return storage.audit.latest(requestId, 'request.revoked');
    },
    rememberName(identity: string, name: string, now: number): Promise<void> {
      return t.rememberName(identity, name, now);
    },
    names(): Promise<Map<string, string>> {
      return t.names();
    },
  };
}

export type TelegramStore = ReturnType<typeof createTelegramStore>;
