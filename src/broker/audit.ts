import { createHash, verify as verifySignature, type KeyObject } from 'node:crypto';
import type { Db } from '../db/open.ts';
import { canonicalJson } from '../lib/canonical-json.ts';
import { publicKeyObject } from '../lib/ed25519-key.ts';
import type { Jwks, Signer } from '../keys/key-ring.ts';
import type { AuditEvent } from './audit-events.ts';

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

export interface AuditRow {
  seq: number;
  at: number;
  event: string;
  actor: string;
  request_id: string | null;
  data: string;
  prev_hash: string;
  hash: string;
}

function entryHash(prevHash: string, row: Omit<AuditRow, 'hash' | 'prev_hash'>): string {
  return createHash('sha256')
    .update(prevHash)
    .update(canonicalJson({ seq: row.seq, at: row.at, event: row.event, actor: row.actor, request_id: row.request_id, data: row.data }))
    .digest('hex');
}

interface CoalesceWindow {
  event: string;
  start: number;
  /** Keys written in full this window: the entry's seq and how often it repeated since. */
  repeats: Map<string, { seq: number; actor: string; count: number }>;
  overCap: number;
  overCapKeys: Set<string>;
}

/**
 * Appends to the hash-chained audit log. Call it inside the transaction that
 * makes the state change it records, so both land or neither does.
 */
export function createAuditLog(db: Db) {
  // The newest entry by primary key (a lookup, not a scan, whatever the log's length).
  const last = db.prepare('SELECT seq, hash FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)');
  const insert = db.prepare(
    'INSERT INTO audit_log (seq, at, event, actor, request_id, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
  );
  const hashAt = db.prepare('SELECT hash FROM audit_log WHERE seq = ?').pluck();
  /** Open coalescing windows, one per kind of entry (this process's memory). */
  const windows = new Map<string, CoalesceWindow>();
  /**
   * Changes to `windows` made by writes not yet known to be committed: a
   * coalesced entry may be written inside a caller's transaction (refuse()
   * in request-credential.ts), which can still roll back after this module
   * returns. Each change names the row it wrote and how to undo it; see
   * {@link settle}.
   */
  const tentative: { seq: number; hash: string; undo(): void }[] = [];

  function write(entry: AuditEntry, at: number): { seq: number; hash: string } {
    const prev = last.get() as { seq: number; hash: string } | undefined;
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
    insert.run(row.seq, row.at, row.event, row.actor, row.request_id, row.data, prevHash, hash);
    return { seq: row.seq, hash };
  }

  /** Returns the new entry's seq. */
  function append(entry: AuditEntry, at: number): number {
    return write(entry, at).seq;
  }

  /**
   * Makes memory agree with the database again. Outside any transaction,
   * every row a tentative change wrote is either committed (it is there,
   * with its hash) or was rolled back (it is not, or another entry took its
   * seq): then the change is undone, so the process never counts repeats
   * of a full entry that does not exist, nor loses the counts of a window
   * whose summary was rolled back.
   */
  function settle(): void {
    if (tentative.length === 0 || db.inTransaction) return;
    const gone = tentative.filter((t) => hashAt.get(t.seq) !== t.hash);
    tentative.length = 0;
    for (const t of gone.reverse()) t.undo();
  }

  /**
   * Runs `fn`, which may change `windows` (recording each change in
   * `tentative`), in a transaction: on an error its changes are undone at
   * once; committed on its own, they are final; inside a caller's
   * transaction they stay tentative until {@link settle} sees the outcome.
   */
  function inTransaction<T>(fn: () => T): T {
    settle();
    const mark = tentative.length;
    try {
      const result = db.transaction(fn)();
      if (!db.inTransaction) tentative.length = mark;
      return result;
    } catch (err) {
      for (const t of tentative.splice(mark).reverse()) t.undo();
      throw err;
    }
  }

  /** Puts back a window whose summary was rolled back, adding its counts to one opened since. */
  function restoreWindow(old: CoalesceWindow): void {
    const current = windows.get(old.event);
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
  function closeWindow(w: CoalesceWindow, end: number, now: number): boolean {
    const repeats = [...w.repeats.values()].filter((r) => r.count > 0);
    const suppressed = repeats.reduce((n, r) => n + r.count, 0) + w.overCap;
    if (suppressed === 0) return windows.delete(w.event) && false;
    const written = write(
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
    windows.delete(w.event); // only once written: a failed write keeps the counts for the next try
    tentative.push({ ...written, undo: () => restoreWindow(w) });
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
  function closeOver(now: number, all: boolean): number {
    const over = [...windows.values()].filter((w) => all || now >= w.start + AUDIT_WINDOW_MS);
    return over.reduce((n, w) => n + Number(closeWindow(w, Math.min(now, w.start + AUDIT_WINDOW_MS), now)), 0);
  }

  function closeWindows(now: number, opts: { all?: boolean } = {}): number {
    settle();
    const all = opts.all ?? false;
    if (![...windows.values()].some((w) => all || now >= w.start + AUDIT_WINDOW_MS)) return 0;
    return inTransaction(() => closeOver(now, all));
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
     * wrote (see `settle`). Returns whether the entry was written in full.
     */
    appendCoalesced(key: string, entry: AuditEntry, at: number): boolean {
      settle();
      // A repeat inside an open window is counted in memory: no transaction, no write lock.
      const open = windows.get(entry.event);
      if (open && at < open.start + AUDIT_WINDOW_MS && counted(open, key)) return false;
      return inTransaction(() => {
        closeOver(at, false);
        let w = windows.get(entry.event);
        if (!w) {
          w = { event: entry.event, start: at, repeats: new Map(), overCap: 0, overCapKeys: new Set() };
          windows.set(entry.event, w);
        }
        if (counted(w, key)) return false;
        const written = write(entry, at);
        const window = w;
        window.repeats.set(key, { seq: written.seq, actor: entry.actor, count: 0 });
        tentative.push({
          ...written,
          undo: () => {
            window.repeats.delete(key);
            if (window.repeats.size === 0 && window.overCap === 0 && windows.get(window.event) === window) windows.delete(window.event);
          },
        });
        return true;
      });
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
export function signAuditHead(db: Db, signer: Pick<Signer, 'kid' | 'sign'>, now: number): AuditHead | undefined {
  return db.transaction(() => {
    const newest = db.prepare('SELECT seq, hash FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)').get() as { seq: number; hash: string } | undefined;
    if (!newest) return undefined;
    const prev = db.prepare('SELECT seq, hash, kid FROM audit_heads ORDER BY id DESC LIMIT 1').get() as Pick<AuditHead, 'seq' | 'hash' | 'kid'> | undefined;
    if (prev && prev.seq === newest.seq && prev.hash === newest.hash && prev.kid === signer.kid) return undefined;
    const head = { seq: newest.seq, hash: newest.hash, at: now, kid: signer.kid, signature: '' };
    head.signature = Buffer.from(signer.sign(auditHeadMessage(head))).toString('base64url');
    db.prepare('INSERT INTO audit_heads (seq, hash, at, kid, signature) VALUES (?, ?, ?, ?, ?)').run(head.seq, head.hash, head.at, head.kid, head.signature);
    return head;
  })();
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
export function verifyAuditChain(db: Db, opts: { onProgress?: (entries: number) => void; jwks?: Jwks } = {}): AuditVerdict {
  const heads: HeadReport = { checked: 0, unchecked: 0, unknownKids: [] };
  /** Valid heads by the seq they vouch for. */
  const vouched = new Map<number, AuditHead>();
  let forged: AuditHead | undefined;
  let disagreeing: AuditHead | undefined;
  if (opts.jwks) {
    const keys = new Map<string, KeyObject>(opts.jwks.keys.map((k) => [k.kid, publicKeyObject(k.x)]));
    const unknown = new Set<string>();
    for (const head of db.prepare('SELECT seq, hash, at, kid, signature FROM audit_heads ORDER BY id').iterate() as Iterable<AuditHead>) {
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
  for (const row of db.prepare('SELECT * FROM audit_log ORDER BY seq').iterate() as Iterable<AuditRow>) {
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
export function* auditEntries(db: Db, sinceSeq = 0): Generator<Record<string, unknown>> {
  for (const row of db.prepare('SELECT * FROM audit_log WHERE seq > ? ORDER BY seq').iterate(sinceSeq) as Iterable<AuditRow>) {
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
