import type { ClaimParams } from './rows.ts';

/** A row an outbox claim may lease: its id, target URL (null: none) and when it became due. */
export interface ClaimCandidate {
  id: string;
  url: string | null;
  due: number;
}

/**
 * What every engine's `outbox.claim` chooses, whatever its lookups: rows
 * whose lease expired first (the oldest work: a crashed dispatcher's), then
 * due rows, the oldest first, never more than `room(url)` per target URL
 * ('' for rows without one) nor `limit` in all. The engine feeds it what its
 * lookups found (`expired`, then `due`), asking `roomFor` how many rows of a
 * target to look up at most, and leases `chosen()`.
 */
export function claimChoice(p: ClaimParams & { limit: number; room?: (url: string) => number }) {
  const room = p.room ?? (() => p.limit);
  const left = new Map<string, number>();
  const roomFor = (url: string | null): number => left.get(url ?? '') ?? Math.max(0, Math.min(room(url ?? ''), p.limit));
  const expired: ClaimCandidate[] = [];
  const due: ClaimCandidate[] = [];
  const take = (c: ClaimCandidate, into: ClaimCandidate[]) => {
    const r = roomFor(c.url);
    if (r <= 0) return;
    left.set(c.url ?? '', r - 1);
    into.push(c);
  };
  return {
    roomFor,
    /** A row whose lease ran out. */
    expired: (c: ClaimCandidate) => take(c, expired),
    /** A pending row due by `dueBy`. */
    due: (c: ClaimCandidate) => take(c, due),
    /** The rows to lease, in order: expired leases, then the oldest due, at most `limit`. */
    chosen(): ClaimCandidate[] {
      due.sort((a, b) => a.due - b.due);
      return [...expired, ...due].slice(0, p.limit);
    },
  };
}
