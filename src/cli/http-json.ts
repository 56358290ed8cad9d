import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';

/**
 * One JSON request over node:http (node:https, loaded only for an https
 * URL), for `jit gate verify`, which a git pre-receive hook runs on every
 * push: fetch would load and compile undici on first use, tens of
 * milliseconds of a call that should take little more than Node's start.
 *
 * Unlike fetch it follows no redirect (the answer is the 3xx itself: a
 * credential is never re-sent to another address) and reads at most
 * `maxBytes` of the answer (a longer body counts as no JSON).
 */
export interface JsonAnswer {
  status: number;
  /** The parsed body; undefined when it is empty, not JSON or longer than `maxBytes`. */
  json: unknown;
}

export interface JsonRequest {
  method: 'GET' | 'POST';
  /** Sent as application/json. */
  body?: string;
  /** Aborts the request; it then rejects with the signal's reason (a TimeoutError for AbortSignal.timeout). */
  signal: AbortSignal;
  maxBytes: number;
}

/**
 * Rejects when no answer came (refused, DNS, TLS, reset, aborted): the
 * error carries Node's `code` (ECONNREFUSED, ENOTFOUND, …), or is the
 * signal's reason. Any status is an answer.
 */
export async function requestJson(url: string, req: JsonRequest): Promise<JsonAnswer> {
  const target = new URL(url);
  if (target.protocol !== 'http:' && target.protocol !== 'https:') throw new Error(`not an http(s) URL: ${url}`);
  const request = target.protocol === 'https:' ? (await import('node:https')).request : httpRequest;
  const headers: Record<string, string> = { accept: 'application/json' };
  if (req.body !== undefined) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = String(Buffer.byteLength(req.body));
  }
  // agent: false: one connection, closed after the answer, so nothing keeps a short-lived process alive.
  const options: RequestOptions = { method: req.method, headers, agent: false, signal: req.signal };
  return new Promise<JsonAnswer>((resolve, reject) => {
    const fail = (err: unknown) => reject(req.signal.aborted ? req.signal.reason : err);
    const outgoing = request(target, options, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let length = 0;
      res.on('data', (chunk: Buffer) => {
        length += chunk.length;
        if (length > req.maxBytes) {
          res.destroy();
          resolve({ status: res.statusCode!, json: undefined });
        } else {
          chunks.push(chunk);
        }
      });
      res.on('end', () => resolve({ status: res.statusCode!, json: parseJson(Buffer.concat(chunks).toString('utf8')) }));
      res.on('error', fail);
      res.on('close', () => {
        if (!res.complete) fail(Object.assign(new Error('the connection closed before the answer was complete'), { code: 'ECONNRESET' }));
      });
    });
    outgoing.on('error', fail);
    outgoing.end(req.body);
  });
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
