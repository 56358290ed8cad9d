import type { AuditHeadRow, AuditRow } from '../rows.ts';
import type { AuditRepository } from '../storage.ts';
import { all, one, sql, type Exec, type Query, type TransactionState } from './exec.ts';

const HEAD = 'seq, hash, at, kid, signature';

const S = {
  // The newest entry by primary key (a backward index scan of one row, whatever the log's length).
  last: sql('audit_last', 'SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1'),
  insert: sql('audit_insert', 'INSERT INTO audit_log (seq, at, event, actor, request_id, data, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)'),
  hashAt: sql('audit_hash_at', 'SELECT hash FROM audit_log WHERE seq = $1'),
  page: sql('audit_page', 'SELECT seq, at, event, actor, request_id, data, prev_hash, hash FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2'),
  ofRequest: sql('audit_of_request', 'SELECT seq, at, event, actor, request_id, data, prev_hash, hash FROM audit_log WHERE request_id = $1 AND seq > $2 ORDER BY seq LIMIT $3'),
  latest: sql('audit_latest', 'SELECT actor, at FROM audit_log WHERE request_id = $1 AND event = $2 ORDER BY seq DESC LIMIT 1'),
  lastHead: sql('audit_last_head', `SELECT ${HEAD} FROM audit_heads ORDER BY id DESC LIMIT 1`),
  insertHead: sql('audit_insert_head', 'INSERT INTO audit_heads (seq, hash, at, kid, signature) VALUES ($1, $2, $3, $4, $5)'),
  heads: sql('audit_heads', `SELECT ${HEAD} FROM audit_heads ORDER BY id`),
};

/**
 * Asks for the chain head in a transaction that has just sent BEGIN and the
 * write lock, without waiting: the answer comes back with theirs, and the
 * transaction's first `last()` (nearly every writing transaction appends to
 * the chain) takes it instead of a round trip made while the lock is held.
 * The lock is taken before the question is answered, so the answer is
 * current. A failure fails the transaction as any statement sent ahead does.
 */
export function askAuditHead(q: Query, state: TransactionState): Promise<unknown> {
  state.auditHeadAsked = one<{ seq: number; hash: string }>(q(S.last)).then((h) => h && { seq: h.seq, hash: h.hash });
  return state.auditHeadAsked;
}

export function pgAudit(x: Exec): AuditRepository {
  return {
    async last() {
      // In a transaction (which holds the write lock) the head is read once; after that it is the entry last inserted.
      if (x.tx?.auditHead) return { ...x.tx.auditHead };
      const asked = x.tx?.auditHeadAsked;
      if (x.tx) x.tx.auditHeadAsked = undefined;
      const head = asked ? await asked : await one<{ seq: number; hash: string }>(x.read(S.last));
      if (x.tx && head) x.tx.auditHead = { seq: head.seq, hash: head.hash };
      return head;
    },
    async insert(row) {
      // Nobody reads the answer: in a transaction it travels with the next statement or the COMMIT (Exec.later).
      await x.later(S.insert, [row.seq, row.at, row.event, row.actor, row.request_id, row.data, row.prev_hash, row.hash]);
      // The known head moves on only when it was known and this entry follows it (an empty log is read again).
      if (x.tx?.auditHead && row.seq > x.tx.auditHead.seq) x.tx.auditHead = { seq: row.seq, hash: row.hash };
      // An entry inserted before the head was taken makes the answer asked for at BEGIN stale: read it again.
      else if (x.tx) x.tx.auditHeadAsked = undefined;
    },
    hashAt: async (seq) => (await one<{ hash: string }>(x.read(S.hashAt, [seq])))?.hash,
    page: (afterSeq, limit) => all<AuditRow>(x.read(S.page, [afterSeq, limit])),
    ofRequest: (requestId, afterSeq, limit) => all<AuditRow>(x.read(S.ofRequest, [requestId, afterSeq, limit])),
    latest: (requestId, event) => one<{ actor: string; at: number }>(x.read(S.latest, [requestId, event])),
    lastHead: () => one<AuditHeadRow>(x.read(S.lastHead)),
    async insertHead(head) {
      await x.write(S.insertHead, [head.seq, head.hash, head.at, head.kid, head.signature]);
    },
    heads: () => all<AuditHeadRow>(x.read(S.heads)),
  };
}
