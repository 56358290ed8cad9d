import type { Clock } from '../lib/clock.ts';
import type { IdGenerator } from '../lib/ids.ts';
import { hashSecret, randomToken } from '../lib/secrets.ts';
import { StorageUniqueError } from '../storage/errors.ts';
import type { ApproverRow } from '../storage/rows.ts';
import type { Storage, Transaction } from '../storage/storage.ts';
import type { AuditLog } from './audit.ts';
import { BrokerError } from './errors.ts';

/*
 * Approvers as people (SPEC §12). An approver is a person who may decide:
 * registered by the operator (`jit approver add`), enrolled with a passkey
 * through a one-time link (the console, a later part), optionally the same
 * person as a Telegram user id. Whatever channel they use, their vote is
 * keyed `approver:<id>` (see {@link voterOf}), so a person has one vote per
 * request. TELEGRAM_APPROVERS stays a separate, Telegram-only list whose
 * members vote as `telegram:<user id>`.
 */

export const APPROVER_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
export const TELEGRAM_USER_ID = /^[1-9]\d{0,19}$/;
/** An enrolment link works for 15 minutes, once. */
export const ENROLMENT_TTL_MS = 15 * 60 * 1000;
/** 24 random bytes: 32 URL-safe characters (SPEC §12 asks for at least 16). */
const ENROLMENT_TOKEN_BYTES = 24;
const ENROLMENT_TOKEN = /^[A-Za-z0-9_-]{16,128}$/;

export const APPROVER_VOTER_PREFIX = 'approver:';
const TELEGRAM_VOTER_PREFIX = 'telegram:';

export interface Approver {
  id: string;
  name: string;
  telegramId: string | null;
  createdAt: number;
}

export interface ApproverListing extends Approver {
  passkeys: number;
  sessions: number;
}

export type ApproverDeps = { storage: Storage; audit: AuditLog; clock: Clock; ids: IdGenerator };

const toApprover = (r: ApproverRow): Approver => ({ id: r.id, name: r.name, telegramId: r.telegram_id, createdAt: r.created_at });

/** The vote key of an approver, whatever channel they decide in. */
export const approverVoter = (approverId: string) => `${APPROVER_VOTER_PREFIX}${approverId}`;

/**
 * Registers an approver and makes their enrolment link's token: returned
 * once, stored only as a hash, valid {@link ENROLMENT_TTL_MS}, single use.
 * Refused with CONFLICT when an approver (not removed) has the name or the
 * Telegram id; BAD_REQUEST for a malformed one.
 */
export async function addApprover(
  deps: ApproverDeps,
  input: { name: string; telegramId?: string | undefined },
  actor = 'operator',
): Promise<{ approver: Approver; token: string; expiresAt: number }> {
  const { storage, audit, clock, ids } = deps;
  const { name } = input;
  const telegramId = input.telegramId ?? null;
  if (!APPROVER_NAME.test(name)) {
    throw new BrokerError('BAD_REQUEST', 'approver name must be 1-63 characters of a-z, 0-9, ".", "_" or "-", starting with a letter or digit');
  }
  if (telegramId !== null && !TELEGRAM_USER_ID.test(telegramId)) {
    throw new BrokerError('BAD_REQUEST', 'Telegram id must be the numeric Telegram user id (the bot\'s /whoami shows it)');
  }
  const token = randomToken(ENROLMENT_TOKEN_BYTES);
  const now = clock.now();
  const expiresAt = now + ENROLMENT_TTL_MS;
  const approver: Approver = { id: ids.next('apr'), name, telegramId, createdAt: now };
  try {
    await storage.transaction(async (tx) => {
      if (await tx.approvers.byName(name)) throw new BrokerError('CONFLICT', `approver "${name}" already exists`);
      if (telegramId !== null) {
        const holder = await tx.approvers.byTelegramId(telegramId);
        if (holder) throw new BrokerError('CONFLICT', `Telegram id ${telegramId} is already registered to approver "${holder.name}"`);
      }
      await tx.approvers.insert({ id: approver.id, name, telegram_id: telegramId, created_at: now, removed_at: null });
      await tx.approvers.addEnrolment({ token_hash: hashSecret(token), approver_id: approver.id, created_at: now, expires_at: expiresAt, used_at: null });
      // Never the token: the audit log is readable by operators.
      await audit.append(tx, { event: 'approver.added', actor, data: { approver: name, approver_id: approver.id, telegram_id: telegramId, enrolment_expires_at: expiresAt } }, now);
    });
  } catch (err) {
    // Another process registered the same name or id between the check and the insert.
    if (err instanceof StorageUniqueError) throw new BrokerError('CONFLICT', `approver "${name}"${telegramId ? ` or Telegram id ${telegramId}` : ''} is already registered`);
    throw err;
  }
  return { approver, token, expiresAt };
}

/** Approvers not removed, by name, with their passkey and console session counts. */
export async function listApprovers(deps: Pick<ApproverDeps, 'storage'>): Promise<ApproverListing[]> {
  return (await deps.storage.approvers.list()).map((r) => ({ ...toApprover(r), passkeys: r.passkeys, sessions: r.sessions }));
}

/**
 * Removes the approver named `name`: in one transaction their console
 * sessions end, their passkeys and enrolment links are deleted, and their
 * Telegram id loses the right to decide (unless TELEGRAM_APPROVERS lists it
 * too). Their past votes stay, still naming them. Undefined when there is
 * no such approver.
 */
export async function removeApprover(
  deps: ApproverDeps,
  name: string,
  actor = 'operator',
): Promise<{ approver: Approver; sessionsEnded: number; passkeysRemoved: number } | undefined> {
  const { storage, audit, clock } = deps;
  return storage.transaction(async (tx) => {
    const row = (await tx.approvers.list()).find((a) => a.name === name);
    if (!row) return undefined;
    const now = clock.now();
    if (!(await tx.approvers.remove(row.id, now))) throw new Error('an approver changed inside its own transaction');
    await audit.append(
      tx,
      { event: 'approver.removed', actor, data: { approver: name, approver_id: row.id, telegram_id: row.telegram_id, sessions_ended: row.sessions, passkeys_removed: row.passkeys } },
      now,
    );
    return { approver: toApprover(row), sessionsEnded: row.sessions, passkeysRemoved: row.passkeys };
  });
}

/** Whether this Telegram user id belongs to an approver not removed (the Telegram approver check's second half). */
export async function isRegisteredTelegramApprover(deps: Pick<ApproverDeps, 'storage'>, telegramUserId: string | number): Promise<boolean> {
  return (await deps.storage.approvers.byTelegramId(String(telegramUserId))) !== undefined;
}

/** The enrolment link's approver if the link is unused and not expired (it stays usable). */
export async function enrolmentApprover(deps: Pick<ApproverDeps, 'storage' | 'clock'>, token: string): Promise<Approver | undefined> {
  if (!ENROLMENT_TOKEN.test(token)) return undefined;
  const row = await deps.storage.approvers.enrolment(hashSecret(token), deps.clock.now());
  const approver = row && (await deps.storage.approvers.get(row.approver_id));
  return approver && toApprover(approver);
}

/**
 * Uses the enrolment link up inside the caller's transaction (the passkey
 * is stored in the same one) and answers its approver; undefined when the
 * link is unknown, used, expired or its approver removed. Of two racers
 * with one link exactly one gets the approver.
 */
export async function consumeEnrolmentIn(tx: Transaction, now: number, token: string): Promise<Approver | undefined> {
  if (!ENROLMENT_TOKEN.test(token)) return undefined;
  const id = await tx.approvers.consumeEnrolment(hashSecret(token), now);
  const row = id === undefined ? undefined : await tx.approvers.get(id);
  return row && toApprover(row);
}

/**
 * Who casts a vote: the person behind a decider's identity. A Telegram
 * user whose id is registered to an approver (not removed) votes as that
 * approver (`approver:<id>`); an approver's own identity stays theirs
 * (refused once they are removed); anything else (`telegram:<id>` of a
 * TELEGRAM_APPROVERS member, `local-cli`) votes as itself. `telegramId`
 * is the person's Telegram user id, if known, so that a vote cast under
 * the other key of the same person is recognised ({@link sameVoter}).
 */
export interface Voter {
  key: string;
  telegramId: string | null;
}

export async function voterOf(tx: Transaction, identity: string): Promise<Voter> {
  if (identity.startsWith(TELEGRAM_VOTER_PREFIX)) {
    const telegramId = identity.slice(TELEGRAM_VOTER_PREFIX.length);
    const approver = await tx.approvers.byTelegramId(telegramId);
    return { key: approver ? approverVoter(approver.id) : identity, telegramId };
  }
  if (identity.startsWith(APPROVER_VOTER_PREFIX)) {
    const approver = await tx.approvers.get(identity.slice(APPROVER_VOTER_PREFIX.length));
    if (!approver || approver.removed_at !== null) throw new BrokerError('FORBIDDEN', 'this approver was removed (or never registered); they can no longer decide');
    return { key: identity, telegramId: approver.telegram_id };
  }
  return { key: identity, telegramId: null };
}

/**
 * Whether `voteKey` (a vote already cast) is the voter's: the same key, or
 * the other key of the same person: `telegram:<id>` of their Telegram id,
 * or an approver not removed registered with it. A removed approver's
 * votes on pending requests are withdrawn (they no longer count:
 * src/storage/vote-rules.ts), so the same person, still a Telegram-only
 * approver through TELEGRAM_APPROVERS, may vote again as that identity.
 */
export async function sameVoter(tx: Transaction, voteKey: string, voter: Voter): Promise<boolean> {
  if (voteKey === voter.key) return true;
  if (voter.telegramId === null) return false;
  if (voteKey === `${TELEGRAM_VOTER_PREFIX}${voter.telegramId}`) return true;
  if (!voteKey.startsWith(APPROVER_VOTER_PREFIX)) return false;
  const approver = await tx.approvers.get(voteKey.slice(APPROVER_VOTER_PREFIX.length));
  return approver !== undefined && approver.removed_at === null && approver.telegram_id === voter.telegramId;
}
