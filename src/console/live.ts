import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { Storage } from '../storage/storage.ts';
import type { Logger } from '../lib/logger.ts';

/*
 * Live updates of the pending list. Every state change the broker makes
 * (in this process or another broker on the same database) appends to the
 * audit log in its own transaction, so the head of the audit log moving is
 * the signal: one poller per process reads it while at least one console
 * page listens, and each /console/events stream sends `change`; console.js
 * then reloads the list's fragment. No state travels in the events.
 */

export interface ChangeFeed {
  /** Calls `onChange` after each change until the returned function is called. */
  subscribe(onChange: () => void): () => void;
}

export function createChangeFeed(storage: Pick<Storage, 'audit'>, log: Logger, pollMs: number): ChangeFeed {
  const listeners = new Set<() => void>();
  let timer: NodeJS.Timeout | undefined;
  let last: number | undefined;
  let busy = false;
  const poll = async () => {
    if (busy) return;
    busy = true;
    try {
      const seq = (await storage.audit.last())?.seq ?? 0;
      if (last !== undefined && seq !== last) for (const l of listeners) l();
      last = seq;
    } catch (err) {
      log.warn({ err }, 'console live updates: reading the audit head failed; retrying');
    } finally {
      busy = false;
    }
  };
  return {
    subscribe(onChange) {
      listeners.add(onChange);
      if (!timer) {
        last = undefined;
        void poll();
        timer = setInterval(() => void poll(), pollMs);
        timer.unref();
      }
      return () => {
        listeners.delete(onChange);
        if (listeners.size === 0 && timer) {
          clearInterval(timer);
          timer = undefined;
        }
      };
    },
  };
}

export interface LiveOptions {
  heartbeatMs: number;
  /** A stream ends after this long; the browser's EventSource reconnects, which checks the session again. */
  lifetimeMs: number;
}

/** Whether the stream's session still stands (not signed out, approver not removed); asked before each event and heartbeat. */
export type StillSignedIn = () => Promise<boolean>;

/** `GET /console/events`: `ready` first, then `change` after each change, heartbeat comments while idle. */
export function eventStream(c: Context, feed: ChangeFeed, opts: LiveOptions, stillSignedIn: StillSignedIn): Response {
  if (c.req.method === 'HEAD') return c.body(null, 200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
  c.header('cache-control', 'no-store');
  return streamSSE(c, async (sse) => {
    let wake: (() => void) | undefined;
    let changed = false;
    const unsubscribe = feed.subscribe(() => {
      changed = true;
      wake?.();
    });
    let closed = false;
    sse.onAbort(() => {
      closed = true;
      wake?.();
    });
    const ends = Date.now() + opts.lifetimeMs;
    try {
      await sse.writeSSE({ event: 'ready', data: '{}', retry: 3000 });
      while (!closed && Date.now() < ends) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.min(opts.heartbeatMs, Math.max(0, ends - Date.now())));
          wake = () => {
            clearTimeout(t);
            resolve();
          };
          if (changed || closed) wake();
        });
        wake = undefined;
        if (closed) break;
        // A session ended meanwhile (sign-out, `jit approver remove`, its absolute limit) ends its stream too, at once.
        if (!(await stillSignedIn().catch(() => false))) break;
        if (changed) {
          changed = false;
          await sse.writeSSE({ event: 'change', data: '{}' });
        } else {
          await sse.write(': heartbeat\n\n');
        }
      }
    } finally {
      unsubscribe();
    }
  });
}
