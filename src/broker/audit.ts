import { hash, verify as verifySignature, type KeyObject } from 'node:crypto';
import { canonicalJson } from '../lib/canonical-json.ts';
import { publicKeyObject } from '../lib/ed25519-key.ts';
import type { Jwks, Signer } from '../keys/key-ring.ts';
import type { AuditRow } from '../storage/rows.ts';
import type { Storage, Transaction } from '../storage/storage.ts';
import type { AuditEvent } from './audit-events.ts';

export type { AuditRow };

export const GENESIS_HASH = '0'.repeat(64);

/**
 * Coalescing of refusal-type entries (policy refusals, failed
 * authentications), so a flood cannot grow the log without bound. Per kind
 * of entry and per process, a window opens at the first entry and closes
 * this long after it.
 */
export const AUDIT_WINDOW_MS = 60_000;
/** Global cap: at most this many entries of one kind are written in full per window; the rest are counted. */
export const AUDIT_FULL_PER_WINDOW = 100;
/** Distinct over-cap keys counted exactly per window (memory bound); beyond it the count is a lower bound. */
export const AUDIT_TRACKED_KEYS = 10_000;

export interface AuditEntry {
  event: AuditEvent;
  actor: string;
  requestId?: string | undefined;
  /** Identifiers and decisions only; callers never pass secrets here. */
  data?: Record<string, unknown>;
}

/**
 * sha256(prevHash || canonical entry). The canonical entry is written out
 * here with its keys in canonicalJson's order (sorted: actor, at, data,
 * event, request_id, seq), byte for byte what canonicalJson gives for it,
 * without sorting the keys of an object whose keys never change: three
 * entries per issue. test/unit/core/audit.test.ts computes it the older way,
 * from canonicalJson.
 */
function entryHash(prevHash: string, row: Omit<AuditRow, 'hash' | 'prev_hash'>): string {
  const j = JSON.stringify;
  const entry = `{"actor":${j(row.actor)},"at":${j(row.at)},"data":${j(row.data)},"event":${j(row.event)},"request_id":${j(row.request_id)},"seq":${j(row.seq)}}`;
  return hash('sha256', prevHash + entry, 'hex');
}

interface CoalesceWindow {
  event: AuditEvent;
  start: number;
  /** Keys written in full this window: the entry's seq and how often it repeated since. */
  repeats: Map<string, { seq: number; actor: string; count: number }>;
  overCap: number;
  overCapKeys: Set<string>;
}

/**
 * Appends to the hash-chained audit log. Call `append` with the transaction
 * that makes the state change it records, so both land or neither does.
 * The chain (each entry's hash over the previous one) is computed here;
 * storage keeps the rows.
 */
export function createAuditLog(storage: Storage, opts: { onCommit?: () => void } = {}) {
  const { onCommit } = opts;
  /** Open coalescing windows, one per kind of entry (this process's memory). */
  const windows = new Map<AuditEvent, CoalesceWindow>();

  async function write(tx: Transaction, entry: AuditEntry, at: number): Promise<{ seq: number; hash: string }> {
    const prev = await tx.audit.last();
    const row = {
      seq: (prev?.seq ?? 0) + 1,
      at,
      event: entry.event,
      actor: entry.actor,
      request_id: entry.requestId ?? null,
      data: canonicalJson(entry.data ?? {}),
    };
    const prevHash = prev?.hash ?? GENESIS_HASH;
    const hash = entryHash(prevHash, row);
    await tx.audit.insert({ ...row, prev_hash: prevHash, hash });
    // The decision streams read what is committed; this process's own commits wake them at once.
    if (onCommit && row.request_id !== null) tx.afterCommit(onCommit);
    return { seq: row.seq, hash };
  }

  /** Appends `entry` in `tx`; returns the new entry's seq. */
  async function append(tx: Transaction, entry: AuditEntry, at: number): Promise<number> {
    return (await write(tx, entry, at)).seq;
  }

  /** Puts back a window whose summary was rolled back, adding its counts to one opened since. */
  function restoreWindow(old: CoalesceWindow): void {
    const current = windows.get(old.event);
    if (current === old) return;
    if (!current) {
      windows.set(old.event, old);
      return;
    }
    current.start = Math.min(current.start, old.start);
    for (const [key, r] of old.repeats) {
      const seen = current.repeats.get(key);
      if (seen) seen.count += r.count;
      else current.repeats.set(key, r);
    }
    current.overCap += old.overCap;
    for (const key of old.overCapKeys) if (current.overCapKeys.size < AUDIT_TRACKED_KEYS) current.overCapKeys.add(key);
  }

  /**
   * Writes the window's suppressed-count entry (if anything was suppressed)
   * at `now`, naming the window's `end`; returns whether it wrote one.
   */
  async function closeWindow(tx: Transaction, w: CoalesceWindow, end: number, now: number): Promise<boolean> {
    const repeats = [...w.repeats.values()].filter((r) => r.count > 0);
    const suppressed = repeats.reduce((n, r) => n + r.count, 0) + w.overCap;
    // Out of the map before the write: a repeat arriving during it must not count into a window whose
    // summary is already taken (it opens a new window instead). Put back if the summary is not written.
    if (windows.get(w.event) === w) windows.delete(w.event);
    if (suppressed === 0) return false;
    try {
      await write(
        tx,
        {
          event: 'audit.suppressed',
          actor: 'broker',
          data: {
            event: w.event,
            from: new Date(w.start).toISOString(),
            to: new Date(end).toISOString(),
            suppressed,
            repeats,
            ...(w.overCap > 0 ? { over_cap: { count: w.overCap, distinct: w.overCapKeys.size, ...(w.overCapKeys.size >= AUDIT_TRACKED_KEYS ? { distinct_is_lower_bound: true } : {}) } } : {}),
          },
        },
        now,
      );
    } catch (err) {
      restoreWindow(w); // a failed write keeps the counts for the next try
      throw err;
    }
    // Memory follows the database: if the transaction rolls back, so does the closing.
    tx.afterRollback(() => restoreWindow(w));
    return true;
  }

  /** Counts `key` into the window if it repeats a full entry or the window's cap is reached; false when it is to be written in full. */
  function counted(w: CoalesceWindow, key: string): boolean {
    const seen = w.repeats.get(key);
    if (seen) {
      seen.count++;
      return true;
    }
    if (w.repeats.size < AUDIT_FULL_PER_WINDOW) return false;
    w.overCap++;
    if (w.overCapKeys.size < AUDIT_TRACKED_KEYS) w.overCapKeys.add(key);
    return true;
  }

  /** Inside a transaction: closes the windows that are over (all with `all`); returns the entries written. */
  async function closeOver(tx: Transaction, now: number, all: boolean): Promise<number> {
    let written = 0;
    for (const w of [...windows.values()].filter((w) => all || now >= w.start + AUDIT_WINDOW_MS)) {
      if (await closeWindow(tx, w, Math.min(now, w.start + AUDIT_WINDOW_MS), now)) written++;
    }
    return written;
  }

  async function closeWindows(now: number, opts: { all?: boolean } = {}): Promise<number> {
    const all = opts.all ?? false;
    if (![...windows.values()].some((w) => all || now >= w.start + AUDIT_WINDOW_MS)) return 0;
    return storage.transaction((tx) => closeOver(tx, now, all));
  }

  return {
    append,
    /**
     * For refusals an outsider can repeat at will (policy refusals, failed
     * authentications): the first entry per `key` (who, and what was
     * refused) in a window is written in full; repeats of it, and every
     * entry past {@link AUDIT_FULL_PER_WINDOW} of this kind, are counted
     * into one `audit.suppressed` entry written when the window closes
     * (`closeWindows`: the next entry after it, the broker's upkeep timer,
     * and at shutdown with `all`). The counts live in this process's memory
     * until then: a crash loses at most one window's counts, never a first
     * entry. What memory remembers follows the database: if the caller's
     * transaction rolls back, so do the full entry and the closed window it
     * wrote (a rollback hook on the transaction). With `tx` it writes in the
     * caller's transaction, else in its own. Returns whether the entry was written in full.
     */
    async appendCoalesced(key: string, entry: AuditEntry, at: number, tx?: Transaction): Promise<boolean> {
      // A repeat inside an open window is counted in memory: no transaction, no write lock.
      const open = windows.get(entry.event);
      if (open && at < open.start + AUDIT_WINDOW_MS && counted(open, key)) return false;
      const run = async (t: Transaction): Promise<boolean> => {
        await closeOver(t, at, false);
        let w = windows.get(entry.event);
        if (!w) {
          w = { event: entry.event, start: at, repeats: new Map(), overCap: 0, overCapKeys: new Set() };
          windows.set(entry.event, w);
        }
        if (counted(w, key)) return false;
        const written = await write(t, entry, at);
        const window = w;
        window.repeats.set(key, { seq: written.seq, actor: entry.actor, count: 0 });
        // Undone if the transaction rolls back (the caller's, or this one on an error).
        t.afterRollback(() => {
          window.repeats.delete(key);
          if (window.repeats.size === 0 && window.overCap === 0 && windows.get(window.event) === window) windows.delete(window.event);
        });
        return true;
      };
      return tx ? run(tx) : storage.transaction(run);
    },
    /** Closes the coalescing windows that are over (all of them with `all`, at shutdown); returns the entries written. */
    closeWindows,
  };
}

export type AuditLog = ReturnType<typeof createAuditLog>;

/** A signed statement "the chain had `seq` entries, the last with `hash`", made at `at` with key `kid`. */
export interface AuditHead {
  seq: number;
  hash: string;
  at: number;
  kid: string;
  /** Ed25519 over {@link auditHeadMessage}, base64url. */
  signature: string;
}

/**
 * The bytes a head signature covers. The key ring also signs webhooks
 * (`{id}.{timestamp}.{body}`) and JWTs (`base64url.base64url`); this fixed
 * prefix with a newline can be neither, so no signature made for one can
 * pass for another.
 */
export function auditHeadMessage(head: Pick<AuditHead, 'seq' | 'hash' | 'at'>): Buffer {
  return Buffer.from(`jit-broker audit head v1\n${head.seq}\n${head.hash}\n${head.at}`);
}

/**
 * Signs the newest entry of the chain and stores the head in `audit_heads`,
 * unless the newest head already names that entry with the same key. The
 * broker calls it every minute and at shutdown (src/broker/audit-upkeep.ts).
 */
export async function signAuditHead(storage: Storage, signer: Pick<Signer, 'kid' | 'sign'>, now: number): Promise<AuditHead | undefined> {
  return storage.transaction(async (tx) => {
    const newest = await tx.audit.last();
    if (!newest) return undefined;
    const prev = await tx.audit.lastHead();
    if (prev && prev.seq === newest.seq && prev.hash === newest.hash && prev.kid === signer.kid) return undefined;
    const head = { seq: newest.seq, hash: newest.hash, at: now, kid: signer.kid, signature: '' };
    head.signature = Buffer.from(signer.sign(auditHeadMessage(head))).toString('base64url');
    await tx.audit.insertHead(head);
    return head;
  });
}

/** Rows read per page while walking the log. */
const AUDIT_PAGE = 1_000;

/** The log's rows after `sinceSeq`, in order, a page at a time. */
async function* auditRows(storage: Storage, sinceSeq: number): AsyncGenerator<AuditRow> {
  for (let after = sinceSeq; ; ) {
    const page = await storage.audit.page(after, AUDIT_PAGE);
    yield* page;
    if (page.length < AUDIT_PAGE) return;
    after = page[page.length - 1]!.seq;
  }
}

export interface HeadReport {
  /** Heads whose signature a key of the ring verified. */
  checked: number;
  /** Heads signed with a key the ring no longer (or never) had: not evidence either way. */
  unchecked: number;
  unknownKids: string[];
  /** The newest checked head: entries up to its seq must exist. */
  newest?: Pick<AuditHead, 'seq' | 'at' | 'kid'>;
}

export type AuditVerdict = ({ ok: true } | { ok: false; seq: number; problem: string }) & { entries: number; heads: HeadReport };

const when = (ms: number) => new Date(ms).toISOString();

/**
 * Walks the chain from the first entry: a changed field breaks that entry's
 * hash, a removed entry leaves a gap in `seq` or a wrong `prev_hash`, a
 * reordered one both. With `jwks` (the key ring's public keys) it also
 * checks every signed head: a head whose signature does not verify is a
 * forgery; an entry whose hash differs from a valid head's is a rewritten
 * chain; and a valid head beyond the last entry means entries were removed
 * from the end, which the chain alone cannot show. A head signed with a key
 * the ring does not hold (revoked, or retired past its grace period) is
 * counted as unchecked and proves nothing.
 */
export async function verifyAuditChain(storage: Storage, opts: { onProgress?: (entries: number) => void; jwks?: Jwks } = {}): Promise<AuditVerdict> {
  const heads: HeadReport = { checked: 0, unchecked: 0, unknownKids: [] };
  /** Valid heads by the seq they vouch for. */
  const vouched = new Map<number, AuditHead>();
  let forged: AuditHead | undefined;
  let disagreeing: AuditHead | undefined;
  if (opts.jwks) {
    const keys = new Map<string, KeyObject>(opts.jwks.keys.map((k) => [k.kid, publicKeyObject(k.x)]));
    const unknown = new Set<string>();
    for (const head of await storage.audit.heads()) {
      const key = keys.get(head.kid);
      if (!key) {
        heads.unchecked++;
        unknown.add(head.kid);
        continue;
      }
      const signature = Buffer.from(head.signature, 'base64url');
      if (signature.length !== 64 || !verifySignature(null, auditHeadMessage(head), key, signature)) {
        forged ??= head;
        continue;
      }
      heads.checked++;
      const other = vouched.get(head.seq);
      if (other && other.hash !== head.hash) disagreeing ??= head;
      vouched.set(head.seq, head);
      if (!heads.newest || head.seq >= heads.newest.seq) heads.newest = { seq: head.seq, at: head.at, kid: head.kid };
    }
    heads.unknownKids = [...unknown];
  }
  const fail = (entries: number, seq: number, problem: string): AuditVerdict => ({ ok: false, entries, seq, problem, heads });

  let prevHash = GENESIS_HASH;
  let expectedSeq = 1;
  let entries = 0;
  for await (const row of auditRows(storage, 0)) {
    entries++;
    if (opts.onProgress && entries % 100_000 === 0) opts.onProgress(entries);
    if (row.seq !== expectedSeq) return fail(entries, row.seq, `expected entry ${expectedSeq}, found ${row.seq} (entry removed or reordered)`);
    if (row.prev_hash !== prevHash) return fail(entries, row.seq, 'prev_hash does not match the previous entry');
    if (entryHash(prevHash, row) !== row.hash) return fail(entries, row.seq, 'hash does not match the entry content (entry altered)');
    const head = vouched.get(row.seq);
    if (head && head.hash !== row.hash) {
      return fail(entries, row.seq, `entry ${row.seq} does not match the signed head of ${when(head.at)} (key ${head.kid}): the chain was rewritten at or before it`);
    }
    prevHash = row.hash;
    expectedSeq++;
  }
  const lastSeq = expectedSeq - 1;
  if (disagreeing) return fail(entries, disagreeing.seq, `two validly signed heads for entry ${disagreeing.seq} disagree (key ${disagreeing.kid}): the chain was rewritten and signed again`);
  if (heads.newest && heads.newest.seq > lastSeq) {
    const n = heads.newest;
    return fail(entries, lastSeq + 1, `entries missing after entry ${lastSeq} (signed head seq ${n.seq}, signed ${when(n.at)} with key ${n.kid}, vouches for entries up to ${n.seq}; the log ends at entry ${lastSeq})`);
  }
  if (forged) return fail(entries, forged.seq, `signed head for entry ${forged.seq} (key ${forged.kid}, ${when(forged.at)}) has an invalid signature: forged or altered`);
  return { ok: true, entries, heads };
}

/** Audit entries in order as plain objects (`data` parsed), for `jit audit export`. */
export async function* auditEntries(storage: Storage, sinceSeq = 0): AsyncGenerator<Record<string, unknown>> {
  for await (const row of auditRows(storage, sinceSeq)) {
    yield {
      seq: row.seq,
      at: new Date(row.at).toISOString(),
      event: row.event,
      actor: row.actor,
      request_id: row.request_id,
      data: JSON.parse(row.data) as unknown,
      prev_hash: row.prev_hash,
      hash: row.hash,
    };
  }
}
