import type { Logger } from '../lib/logger.ts';
import type { AuditRow } from '../storage/rows.ts';
import type { Storage } from '../storage/storage.ts';
import { FINAL_STATUSES, type RequestStatus } from '../wire/schemas.ts';
import type { RequestStreamEvent } from '../wire/events.ts';
import type { AuditEvent } from './audit-events.ts';
import { BrokerError } from './errors.ts';
import type { RequestRow } from './rows.ts';
import { requestView } from './view.ts';

/*
 * The decision stream (GET /jit/requests/{id}/events, SPEC §14), fed from
 * what is committed: the audit log. Every status change of a request is
 * one audit entry written in the transaction that made it, so the entry's
 * seq is the event's id: ordered, valid across connections and across
 * processes and broker nodes sharing the database.
 *
 * One hub per process. While at least one stream is open it reads the log
 * past its cursor (one indexed page query) every `pollMs`, and at once when
 * this process commits an audit entry ({@link RequestStreams.wake}, called
 * from the audit log's commit hook), and hands each status change to the
 * streams open on that request. A decision made elsewhere (`jit approve` in
 * a shell, another broker on the same database) arrives
 * within one poll. No timer per stream: one poll timer and one heartbeat
 * timer for all, stopped while no stream is open.
 */

/** The entries that move a request to a status, and that status. */
const STATUS_OF: Partial<Record<AuditEvent, RequestStatus>> = {
  'request.approved': 'approved',
  'request.denied': 'denied',
  'request.timed_out': 'timed_out',
  'request.expired': 'expired',
  'request.failed': 'failed',
  'request.interrupted': 'failed',
  'request.revoked': 'revoked',
  'credential.issued': 'issued',
};

/**
 * Entries that move the request only sometimes (request-machine.ts): a
 * credential's expiry (or its token vanishing from Vault) takes its issued
 * request to `expired`; an interrupted issue fails a tier-1 request. The
 * request's status says whether it did: both statuses are final.
 */
const STATUS_IF_REQUEST_IS: Partial<Record<AuditEvent, RequestStatus>> = {
  'credential.expired': 'expired',
  'credential.vanished': 'expired',
  'credential.interrupted': 'failed',
};

/** The status `entry` moved `row` to, or undefined when it moved none. */
export function statusChangeOf(entry: Pick<AuditRow, 'event'>, row: Pick<RequestRow, 'status' | 'required_tier'>): RequestStatus | undefined {
  const event = entry.event as AuditEvent;
  // A tier-1 request is born approved: its `request.approved` by policy follows in the same transaction.
  if (event === 'request.created') return row.required_tier === 1 ? undefined : 'pending';
  const conditional = STATUS_IF_REQUEST_IS[event];
  if (conditional) return row.status === conditional ? conditional : undefined;
  return STATUS_OF[event];
}

export function isFinal(status: RequestStatus): boolean {
  return FINAL_STATUSES.includes(status);
}

/** Where one stream's events go (the HTTP route's SSE writer). Each resolves once the write was taken by the connection. */
export interface StreamSink {
  event(e: RequestStreamEvent): Promise<void>;
  heartbeat(): Promise<void>;
  /** Cuts the connection at once (a reader that stopped reading: a graceful end would wait behind its unread bytes). */
  drop?(): void;
}

/** An open stream, between {@link RequestStreams.open} and its end. */
export interface RequestStream {
  /**
   * Writes the queued events (the current state, or those after
   * Last-Event-ID) to `sink`, then each change as it commits; resolves when
   * the stream ends: after a final state, on {@link close}, on the hub's
   * shutdown, or when the reader stalls.
   */
  run(sink: StreamSink): Promise<void>;
  /** Ends the stream (the client went away). Idempotent. */
  close(): void;
}

export interface RequestStreams {
  /**
   * Opens a stream on `request` (the caller checked that `agent` owns it):
   * throws TOO_MANY_STREAMS when the agent has `maxPerAgent` open, else
   * reads the events the stream starts with. `lastEventId`: the client's
   * Last-Event-ID (every change after it first), or undefined (the
   * request's current state first).
   */
  open(agent: { id: string; name: string }, request: RequestRow, lastEventId: number | undefined): Promise<RequestStream>;
  /** This process committed an audit entry about a request: read the log now rather than at the next poll. */
  wake(): void;
  /** Open streams (of one agent, or all). */
  openCount(agentId?: string): number;
  /** Ends every stream and stops the timers (shutdown). Idempotent. */
  close(): Promise<void>;
}

export interface RequestStreamOptions {
  storage: Storage;
  log: Logger;
  /** Open streams an agent may hold at once (JIT_MAX_STREAMS). */
  maxPerAgent: number;
  /** How often the audit log is read while streams are open: the bound on a decision's latency from another process. */
  pollMs?: number;
  /** Idle interval between heartbeat comments; a stream whose write has not been taken for two of them (at least 10 s) is closed. */
  heartbeatMs?: number;
  /** How long a write may wait for the connection before its stream is closed (default two heartbeats, at least 10 s). */
  stallMs?: number;
}

export const DEFAULT_STREAM_POLL_MS = 200;
export const DEFAULT_STREAM_HEARTBEAT_MS = 15_000;
/** The shortest a write may wait before its stream is closed as stalled. */
const MIN_STALL_MS = 10_000;
/** Audit entries read per poll (more are read at once, page after page). */
const PAGE = 500;
/** A request's entries read for a stream's start (a request has a handful). */
const BACKLOG = 1000;
/** Events queued for one stream before it is closed (its client resumes with Last-Event-ID); the state machine allows far fewer. */
const MAX_QUEUED = 64;

interface Sub {
  agentId: string;
  requestId: string;
  queue: RequestStreamEvent[];
  /** Seq of the last event written (or skipped as already known). */
  lastSent: number;
  sink: StreamSink | undefined;
  /** Since when a write has been under way (undefined when none is). */
  writingSince: number | undefined;
  done: boolean;
  ended: () => void;
  finished: Promise<void>;
}

export function createRequestStreams(opts: RequestStreamOptions): RequestStreams {
  const { storage, log, maxPerAgent } = opts;
  const pollMs = opts.pollMs ?? DEFAULT_STREAM_POLL_MS;
  const heartbeatMs = opts.heartbeatMs ?? DEFAULT_STREAM_HEARTBEAT_MS;
  // A write the connection has not taken for this long: the reader stalled (its socket buffers are full).
  const stallMs = opts.stallMs ?? Math.max(2 * heartbeatMs, MIN_STALL_MS);
  const byRequest = new Map<string, Set<Sub>>();
  const perAgent = new Map<string, number>();
  let open = 0;
  let closed = false;
  /** The seq through which the log has been handed out; undefined while no stream is open. */
  let cursor: number | undefined;
  let cursorRead: Promise<void> | undefined;
  let pollTimer: NodeJS.Timeout | undefined;
  let heartbeatTimer: NodeJS.Timeout | undefined;
  let polling: Promise<void> | undefined;
  let again = false;
  let failing = false;

  function schedulePoll(delayMs: number): void {
    if (closed || open === 0 || pollTimer) return;
    pollTimer = setTimeout(() => {
      pollTimer = undefined;
      void poll();
    }, delayMs);
    pollTimer.unref();
  }

  function poll(): Promise<void> {
    if (polling) {
      again = true;
      return polling;
    }
    polling = (async () => {
      try {
        let more: boolean;
        do {
          again = false;
          more = await pollOnce();
        } while ((more || again) && open > 0 && !closed);
        if (failing) log.info('decision streams: reading the audit log again');
        failing = false;
      } catch (err) {
        // Once per outage, not once per poll.
        if (!failing) log.warn({ err }, 'decision streams: reading the audit log failed; retrying at every poll');
        failing = true;
      } finally {
        polling = undefined;
        schedulePoll(pollMs);
      }
    })();
    return polling;
  }

  /** One page of the log past the cursor, handed to the streams; true when there may be more. */
  async function pollOnce(): Promise<boolean> {
    if (cursor === undefined) return false;
    const rows = await storage.audit.page(cursor, PAGE);
    if (rows.length === 0) return false;
    const entries = new Map<string, AuditRow[]>();
    for (const r of rows) {
      if (r.request_id === null || !byRequest.has(r.request_id)) continue;
      const list = entries.get(r.request_id);
      if (list) list.push(r);
      else entries.set(r.request_id, [r]);
    }
    for (const [requestId, list] of entries) {
      const row = await storage.requests.get(requestId);
      if (!row) continue;
      const events = await eventsOf(list, row);
      for (const sub of byRequest.get(requestId) ?? []) for (const e of events) deliver(sub, e);
    }
    // Only once handed out: a read that failed above is read again at the next poll (the streams drop what they had, by seq).
    if (cursor !== undefined) cursor = Math.max(cursor, rows.at(-1)!.seq);
    return rows.length === PAGE;
  }

  /** The events of `entries` (one request's, in order): each the request's view with the status that entry moved it to. */
  async function eventsOf(entries: AuditRow[], row: RequestRow): Promise<RequestStreamEvent[]> {
    const changes = entries.flatMap((e) => {
      const status = statusChangeOf(e, row);
      return status ? [{ seq: e.seq, status }] : [];
    });
    if (changes.length === 0) return [];
    const view = await requestView({ storage }, row);
    return changes.map((c) => ({ seq: c.seq, data: { ...view, status: c.status } }));
  }

  function deliver(sub: Sub, e: RequestStreamEvent): void {
    if (sub.done || e.seq <= sub.lastSent || sub.queue.some((q) => q.seq === e.seq)) return;
    sub.queue.push(e);
    if (sub.queue.length > MAX_QUEUED) {
      log.warn({ request_id: sub.requestId }, 'decision stream: reader too slow, closing (it resumes with Last-Event-ID)');
      drop(sub);
      return;
    }
    void pump(sub);
  }

  async function pump(sub: Sub): Promise<void> {
    if (!sub.sink || sub.writingSince !== undefined) return;
    const sink = sub.sink;
    while (!sub.done && sub.queue.length > 0) {
      const e = sub.queue.shift()!;
      if (e.seq <= sub.lastSent) continue;
      sub.writingSince = performance.now();
      try {
        await sink.event(e);
      } catch (err) {
        log.debug({ err, request_id: sub.requestId }, 'decision stream: write failed, closing');
        finish(sub);
      } finally {
        sub.writingSince = undefined;
      }
      sub.lastSent = e.seq;
      if (isFinal(e.data.status)) finish(sub);
    }
  }

  function heartbeat(): void {
    const now = performance.now();
    for (const subs of byRequest.values()) {
      for (const sub of subs) {
        if (!sub.sink || sub.done) continue;
        if (sub.writingSince !== undefined) {
          if (now - sub.writingSince >= stallMs) {
            log.warn({ request_id: sub.requestId }, 'decision stream: reader stalled, closing (it resumes with Last-Event-ID)');
            drop(sub);
          }
          continue;
        }
        const sink = sub.sink;
        sub.writingSince = now;
        sink
          .heartbeat()
          .catch(() => finish(sub))
          .finally(() => {
            sub.writingSince = undefined;
            void pump(sub);
          });
      }
    }
  }

  function register(sub: Sub): void {
    let subs = byRequest.get(sub.requestId);
    if (!subs) byRequest.set(sub.requestId, (subs = new Set()));
    subs.add(sub);
    perAgent.set(sub.agentId, (perAgent.get(sub.agentId) ?? 0) + 1);
    open++;
    if (!heartbeatTimer) {
      heartbeatTimer = setInterval(heartbeat, heartbeatMs);
      heartbeatTimer.unref();
    }
    schedulePoll(pollMs);
  }

  /** Ends a stream whose reader does not keep up: its connection is cut rather than drained. */
  function drop(sub: Sub): void {
    finish(sub);
    try {
      sub.sink?.drop?.();
    } catch (err) {
      log.debug({ err }, 'decision stream: cutting the connection failed');
    }
  }

  function finish(sub: Sub): void {
    if (sub.done) return;
    sub.done = true;
    sub.queue.length = 0;
    const subs = byRequest.get(sub.requestId);
    subs?.delete(sub);
    if (subs?.size === 0) byRequest.delete(sub.requestId);
    const n = (perAgent.get(sub.agentId) ?? 1) - 1;
    if (n > 0) perAgent.set(sub.agentId, n);
    else perAgent.delete(sub.agentId);
    open--;
    if (open === 0) stopTimers();
    sub.ended();
  }

  function stopTimers(): void {
    clearTimeout(pollTimer);
    clearInterval(heartbeatTimer);
    pollTimer = heartbeatTimer = undefined;
    // Nobody listens: the next stream starts from the log's end (its own backlog comes from its request's entries).
    cursor = undefined;
  }

  function readCursor(): Promise<void> {
    if (cursor !== undefined) return Promise.resolve();
    cursorRead ??= storage.audit
      .last()
      .then((last) => {
        if (open > 0) cursor = Math.max(cursor ?? 0, last?.seq ?? 0);
      })
      .finally(() => (cursorRead = undefined));
    return cursorRead;
  }

  return {
    async open(agent, request, lastEventId) {
      if (closed) throw new BrokerError('UNAVAILABLE', 'the broker is shutting down; reconnect with Last-Event-ID', { retryAfterSeconds: 1 });
      const held = perAgent.get(agent.id) ?? 0;
      if (held >= maxPerAgent) {
        throw new BrokerError('TOO_MANY_STREAMS', `agent "${agent.name}" already has ${held} decision streams open (limit ${maxPerAgent}); close one, or read the request with GET /jit/requests/{id}`, {
          retryAfterSeconds: 1,
        });
      }
      let ended!: () => void;
      const finished = new Promise<void>((r) => (ended = r));
      const sub: Sub = { agentId: agent.id, requestId: request.id, queue: [], lastSent: lastEventId ?? 0, sink: undefined, writingSince: undefined, done: false, ended, finished };
      // Listening before reading: a change committed meanwhile is in the backlog, the poll, or both (kept once, by seq).
      register(sub);
      try {
        await readCursor();
        const entries = await storage.audit.ofRequest(request.id, lastEventId ?? 0, BACKLOG);
        const row = (await storage.requests.get(request.id)) ?? request;
        const events = await eventsOf(entries, row);
        let backlog = lastEventId === undefined ? events.slice(-1) : events;
        if (lastEventId === undefined && backlog.length === 0) {
          // No entry names a status (a request older than the log it is in): its state as it stands.
          backlog = [{ seq: entries.at(-1)?.seq ?? 0, data: await requestView({ storage }, row) }];
        }
        // Without Last-Event-ID the stream starts at the current state: what the poll queued before it is dropped by seq.
        if (lastEventId === undefined) sub.lastSent = backlog[0]!.seq - 1;
        const queued = new Map([...backlog, ...sub.queue].map((e) => [e.seq, e]));
        sub.queue = [...queued.values()].filter((e) => e.seq > sub.lastSent).sort((a, b) => a.seq - b.seq);
        // Resumed after its final event: nothing more will come.
        if (sub.queue.length === 0 && isFinal(row.status)) finish(sub);
      } catch (err) {
        finish(sub);
        throw err;
      }
      return {
        async run(sink) {
          if (!sub.done) {
            sub.sink = sink;
            void pump(sub);
          }
          await finished;
        },
        close: () => finish(sub),
      };
    },
    wake() {
      if (open === 0 || closed) return;
      clearTimeout(pollTimer);
      pollTimer = undefined;
      schedulePoll(0);
    },
    openCount: (agentId) => (agentId === undefined ? open : (perAgent.get(agentId) ?? 0)),
    async close() {
      closed = true;
      for (const subs of [...byRequest.values()]) for (const sub of [...subs]) finish(sub);
      stopTimers();
      await polling;
    },
  };
}
