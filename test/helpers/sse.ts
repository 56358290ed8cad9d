import { request, type ClientRequest, type IncomingMessage } from 'node:http';

/** One Server-Sent Event as read off the wire, and when it arrived (Date.now() and performance.now()). */
export interface SseEvent {
  id: string | undefined;
  event: string | undefined;
  data: string;
  json: any;
  at: number;
  perf: number;
}

/**
 * A raw Server-Sent Events reader over node:http (no EventSource): it parses
 * the `text/event-stream` framing itself (fields, comments, blank-line
 * separated events, CRLF or LF), so the test sees exactly what the server
 * wrote. `next()` waits for the next event, `ended` resolves when the server
 * closed the stream, `close()` cuts the connection.
 */
export interface SseReader {
  status: number;
  headers: IncomingMessage['headers'];
  /** The body when the answer was not a stream (an error's problem+json). */
  body: any;
  events: SseEvent[];
  /** Comment lines (without the leading ':'), in order. */
  comments: string[];
  next(): Promise<SseEvent>;
  /** Resolves once `pred` holds for what arrived (re-checked on every line). */
  until(pred: () => boolean): Promise<void>;
  ended: Promise<void>;
  isEnded(): boolean;
  close(): void;
}

export function openSse(url: string, headers: Record<string, string> = {}): Promise<SseReader> {
  return new Promise((resolve, reject) => {
    let req: ClientRequest;
    req = request(url, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      const events: SseEvent[] = [];
      const comments: string[] = [];
      const waiters: Array<() => void> = [];
      let buffer = '';
      let cur: { id?: string; event?: string; data: string[] } = { data: [] };
      let done = false;
      let taken = 0;
      const notify = () => {
        for (const w of waiters.splice(0)) w();
      };
      const ended = new Promise<void>((r) => {
        const end = () => {
          if (done) return;
          done = true;
          r();
          notify();
        };
        res.once('end', end);
        res.once('close', end);
        res.once('error', end);
      });
      const reader: SseReader = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        body: undefined,
        events,
        comments,
        next() {
          return new Promise((ok, fail) => {
            const check = () => {
              if (taken < events.length) return ok(events[taken++]!);
              if (done) return fail(new Error(`stream ended after ${events.length} events`));
              waiters.push(check);
            };
            check();
          });
        },
        until(pred) {
          return new Promise((ok, fail) => {
            const check = () => {
              if (pred()) return ok();
              if (done) return fail(new Error('stream ended before the condition held'));
              waiters.push(check);
            };
            check();
          });
        },
        ended,
        isEnded: () => done,
        close: () => req.destroy(),
      };
      res.setEncoding('utf8');
      if (!String(res.headers['content-type'] ?? '').startsWith('text/event-stream')) {
        let text = '';
        res.on('data', (d: string) => (text += d));
        res.once('end', () => {
          try {
            reader.body = JSON.parse(text);
          } catch {
            reader.body = text;
          }
          resolve(reader);
        });
        return;
      }
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let nl: number;
        while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + (buffer.startsWith('\r\n', nl) ? 2 : 1));
          if (line === '') {
            if (cur.data.length > 0) {
              const data = cur.data.join('\n');
              let json: unknown;
              try {
                json = JSON.parse(data);
              } catch {
                json = undefined;
              }
              events.push({ id: cur.id, event: cur.event, data, json, at: Date.now(), perf: performance.now() });
            }
            cur = { data: [] };
          } else if (line.startsWith(':')) {
            comments.push(line.slice(1).trimStart());
          } else {
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === 'data') cur.data.push(value);
            else if (field === 'id') cur.id = value;
            else if (field === 'event') cur.event = value;
          }
          notify();
        }
      });
      resolve(reader);
    });
    req.once('error', reject);
    req.end();
  });
}
