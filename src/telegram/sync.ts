import { createHash } from 'node:crypto';
import type { Api } from 'grammy';
import type { BrokerDeps } from '../broker/deps.ts';
import { approvalNeedsStepUp, approvalsNeeded, consoleRequestUrl } from '../broker/decide.ts';
import type { RequestRow } from '../broker/rows.ts';
import type { Clock } from '../lib/clock.ts';
import type { Logger } from '../lib/logger.ts';
import { classifyTelegramError, describeTelegramError } from './errors.ts';
import { renderApproval, type ApprovalView, type RenderedApproval } from './render.ts';
import type { TelegramStore } from './store.ts';

export interface SyncOptions {
  deps: BrokerDeps;
  store: TelegramStore;
  /** A Bot API client without inline retries: this loop is the retry. */
  api: Api;
  chatId: string;
  token: string;
  log: Logger;
  clock: Clock;
  /** How long a claim to post a message is honoured before another pass may take it over. */
  postLeaseMs: number;
  /** First pause after a network error or 5xx; doubles while failures continue (max 60 s). */
  errorBackoffMs: number;
}

export interface PassResult {
  posted: number;
  edited: number;
  /** Set when Telegram failed and the pass stopped early: do not call before this time (epoch ms). */
  pauseUntil?: number;
  error?: Record<string, unknown>;
}

class StopPass extends Error {
  constructor(readonly pauseMs: number, readonly detail: Record<string, unknown>) {
    super('telegram pass stopped');
  }
}

const hashOf = (r: RenderedApproval) => createHash('sha256').update(r.html).update('\0').update(JSON.stringify(r.keyboard)).digest('hex');

/** Everything the approval message of `request` shows, from the database: what the sync loop renders, and what the handlers check taps against. */
export async function approvalView(deps: BrokerDeps, store: TelegramStore, request: RequestRow, names: ReadonlyMap<string, string>): Promise<ApprovalView> {
  const needsCredential = request.status === 'issued' || request.status === 'expired' || request.status === 'revoked';
  const cred = needsCredential ? await deps.storage.credentials.forRequest(request.id) : undefined;
  const draft = request.status === 'pending' ? await store.draftFor(request.id) : undefined;
  return {
    request,
    votes: await store.votes(request.id),
    quorum: approvalsNeeded(deps.config, request),
    names,
    revokedBy: request.status === 'revoked' ? await store.revokedBy(request.id) : undefined,
    credential: cred ? { issued_at: cred.issued_at, expires_at: cred.expires_at, ended_at: cred.ended_at } : undefined,
    draft: draft ? { id: draft.id, version: draft.version, narrowing: draft.narrowing, updatedBy: draft.updatedBy } : undefined,
    consoleUrl: deps.config.publicUrlSet ? consoleRequestUrl(deps.config.publicUrl, request.id) : undefined,
    needsStepUp: approvalNeedsStepUp(deps.config, request),
  };
}

/**
 * One sync pass makes the chat match the database: a message for every
 * pending tier-2/3 request that has none, and an edit for every message
 * whose request changed since it was last rendered (decision, vote, time
 * out, issue, revoke, expiry). Everything it needs is in SQLite, so a
 * restart or an outage only delays it. A 429 or a network failure stops
 * the pass and tells the caller how long to wait; requests stay pending
 * meanwhile and nothing is lost.
 */
export function createSync(o: SyncOptions) {
  const { deps, store, api, chatId, log, clock } = o;
  let consecutiveFailures = 0;

  const viewOf = (request: RequestRow, names: ReadonlyMap<string, string>) => approvalView(deps, store, request, names);

  /** Decides what a failed call means for this pass: skip the item, or stop and pause. */
  function failed(err: unknown, what: string, requestId: string): 'skip' | never {
    const f = classifyTelegramError(err);
    const detail = { request_id: requestId, telegram: describeTelegramError(err, o.token) };
    switch (f.kind) {
      case 'rate_limited':
        throw new StopPass(f.retryAfterSeconds * 1000, detail);
      case 'unavailable':
        consecutiveFailures++;
        throw new StopPass(Math.min(60_000, o.errorBackoffMs * 2 ** (consecutiveFailures - 1)), detail);
      case 'unauthorized':
        log.error(detail, `telegram: the Bot API refused the bot token while trying to ${what}; check TELEGRAM_BOT_TOKEN`);
        throw new StopPass(60_000, detail);
      default:
        if (f.kind === 'refused' && f.code === 403) {
          log.error(detail, `telegram: forbidden to ${what}; is the bot still a member of TELEGRAM_CHAT_ID?`);
          throw new StopPass(30_000, detail);
        }
        return 'skip';
    }
  }

  async function editOne(requestId: string, names: ReadonlyMap<string, string>): Promise<boolean> {
    const row = await store.get(requestId);
    if (!row || row.message_id === null || row.settled) return false;
    const request = await deps.storage.requests.get(requestId);
    if (!request) {
      await store.rendered(requestId, row.rendered_hash, row.rendered_status ?? 'pending', row.rendered_hash ?? '', true, clock.now());
      return false;
    }
    const rendered = renderApproval(await viewOf(request, names));
    const hash = hashOf(rendered);
    if (hash === row.rendered_hash) return false;
    try {
      await api.editMessageText(row.chat_id, row.message_id, rendered.html, {
        parse_mode: 'HTML',
        // An explicit empty keyboard removes the buttons whatever Telegram does with an absent one.
        reply_markup: { inline_keyboard: rendered.keyboard },
        link_preview_options: { is_disabled: true },
      });
    } catch (err) {
      const f = classifyTelegramError(err);
      if (f.kind === 'not_modified') {
        // Already showing this (another bot instance got there first).
      } else if (f.kind === 'message_gone') {
        log.warn({ request_id: requestId, message_id: row.message_id }, 'telegram: the approval message was deleted; it will not be updated again');
        await store.rendered(requestId, row.rendered_hash, rendered.status, hash, true, clock.now());
        return false;
      } else if (failed(err, 'edit an approval message', requestId) === 'skip') {
        // A 400 that retrying cannot fix (a rendering bug): record it so the loop does not spin on it.
        log.error({ request_id: requestId, telegram: describeTelegramError(err, o.token) }, 'telegram: could not edit the approval message');
        await store.rendered(requestId, row.rendered_hash, rendered.status, hash, rendered.final, clock.now());
        return false;
      }
    }
    await store.rendered(requestId, row.rendered_hash, rendered.status, hash, rendered.final, clock.now());
    log.debug({ request_id: requestId, status: rendered.status }, 'telegram: approval message updated');
    return true;
  }

  async function postOne(request: RequestRow, names: ReadonlyMap<string, string>): Promise<boolean> {
    const claim = await store.claim(request.id, chatId, clock.now(), o.postLeaseMs);
    if (!claim) return false;
    const rendered = renderApproval(await viewOf(request, names));
    let messageId: number;
    try {
      const message = await api.sendMessage(chatId, rendered.html, {
        parse_mode: 'HTML',
        reply_markup: { inline_keyboard: rendered.keyboard },
        link_preview_options: { is_disabled: true },
      });
      messageId = message.message_id;
    } catch (err) {
      await store.release(request.id, claim);
      failed(err, 'post an approval request', request.id);
      // Refused outright (chat not found, bad markup): every post would fail the same way, so pause.
      const detail = { request_id: request.id, telegram: describeTelegramError(err, o.token) };
      log.error(detail, 'telegram: the Bot API refused the approval request; check TELEGRAM_CHAT_ID; will retry');
      throw new StopPass(30_000, detail);
    }
    if (!(await store.posted(request.id, claim, messageId, rendered.status, hashOf(rendered), rendered.final, clock.now()))) {
      log.warn({ request_id: request.id, message_id: messageId }, 'telegram: another instance took over this post while it was under way; the request may show twice');
      return false;
    }
    log.info({ request_id: request.id, message_id: messageId, tier: request.required_tier }, 'telegram: approval request posted');
    return true;
  }

  return {
    async pass(): Promise<PassResult> {
      const result: PassResult = { posted: 0, edited: 0 };
      const names = await store.names();
      await store.pruneDrafts();
      try {
        for (const row of await store.unsettled(500)) {
          if (await editOne(row.request_id, names)) result.edited++;
        }
        const posted: string[] = [];
        for (const request of await store.unposted(clock.now(), o.postLeaseMs, 20)) {
          if (await postOne(request, names)) {
            result.posted++;
            posted.push(request.id);
          }
        }
        // A request decided while its message was being posted: correct it now, not a pass later.
        for (const id of posted) if (await editOne(id, names)) result.edited++;
        consecutiveFailures = 0;
      } catch (err) {
        if (!(err instanceof StopPass)) throw err;
        result.pauseUntil = Date.now() + err.pauseMs;
        result.error = err.detail;
      }
      return result;
    },
  };
}
