/**
 * Messages between the primary and its HTTP workers over node:cluster's IPC
 * channel (JIT_HTTP_WORKERS > 1). One-way notices carry only a type; calls
 * carry an id and are answered by a reply with the same id.
 *
 * Nothing secret crosses this channel except a Telegram webhook update on
 * its way to the bot (the same bytes Telegram sent), and every message stays
 * between processes of one broker.
 */
import type { ApprovalBotStatus } from '../telegram/index.ts';

/** What a worker tells the primary without waiting. */
export type WorkerNotice =
  /** An outbox row was committed: wake the dispatcher. */
  | { t: 'jit:outbox' }
  /** A request became pending or was decided: run the Telegram sync now. */
  | { t: 'jit:kick' }
  /** This worker could not start (its last word before it exits): why, as one line. */
  | { t: 'jit:startup-failed'; message: string };

/** What the primary tells a worker without waiting. */
export type PrimaryNotice =
  | { t: 'jit:reload-policies' }
  | { t: 'jit:telegram-status'; status: ApprovalBotStatus }
  | { t: 'jit:shutdown' };

export interface CallMessage {
  t: 'jit:call';
  id: number;
  op: string;
  arg?: unknown;
}

export interface ReplyMessage {
  t: 'jit:reply';
  id: number;
  ok: boolean;
  value?: unknown;
  error?: string;
}

export type IpcMessage = WorkerNotice | PrimaryNotice | CallMessage | ReplyMessage;

export function isIpcMessage(m: unknown): m is IpcMessage {
  return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string' && (m as { t: string }).t.startsWith('jit:');
}

/** Operations one side answers for the other. */
export type Handlers = Record<string, (arg: unknown) => unknown>;

/**
 * Request/response over one IPC channel: `call` sends and waits for the
 * reply (rejecting after `timeoutMs`), `receive` answers the other side's
 * calls and settles our own. Returns false for a message that is not a call
 * or a reply, which the caller handles itself.
 */
export function createRpc(send: (m: IpcMessage) => void, handlers: Handlers, timeoutMs = 10_000) {
  let nextId = 1;
  const waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void; timer: NodeJS.Timeout }>();
  return {
    call(op: string, arg?: unknown): Promise<unknown> {
      const id = nextId++;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id);
          reject(new Error(`no answer to "${op}" within ${timeoutMs} ms`));
        }, timeoutMs);
        waiting.set(id, { resolve, reject, timer });
        try {
          send({ t: 'jit:call', id, op, ...(arg === undefined ? {} : { arg }) });
        } catch (err) {
          clearTimeout(timer);
          waiting.delete(id);
          reject(err as Error);
        }
      });
    },
    receive(m: IpcMessage): boolean {
      if (m.t === 'jit:reply') {
        const w = waiting.get(m.id);
        if (w) {
          waiting.delete(m.id);
          clearTimeout(w.timer);
          if (m.ok) w.resolve(m.value);
          else w.reject(new Error(m.error ?? 'failed'));
        }
        return true;
      }
      if (m.t !== 'jit:call') return false;
      const handler = handlers[m.op];
      const reply = (r: Omit<ReplyMessage, 't' | 'id'>) => {
        try {
          send({ t: 'jit:reply', id: m.id, ...r });
        } catch {
          // The other side is gone; its call times out.
        }
      };
      if (!handler) {
        reply({ ok: false, error: `unknown operation "${m.op}"` });
        return true;
      }
      Promise.resolve()
        .then(() => handler(m.arg))
        .then(
          (value) => reply({ ok: true, value }),
          (err: unknown) => reply({ ok: false, error: (err as Error)?.message ?? 'failed' }),
        );
      return true;
    },
    /** Fails every call still waiting (the other side exited). */
    failAll(reason: string): void {
      for (const [id, w] of waiting) {
        clearTimeout(w.timer);
        w.reject(new Error(reason));
        waiting.delete(id);
      }
    },
  };
}

/** A Telegram webhook update as it crosses to the primary. */
export interface ForwardedUpdate {
  headers: Record<string, string>;
  body: string;
}

/** The bot's answer to a forwarded update. */
export interface ForwardedAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** The primary's node id (broker/node.ts), passed to its HTTP workers: they mint as that node, under its lease. */
export const WORKER_NODE_ID_ENV = 'JIT_WORKER_NODE_ID';
