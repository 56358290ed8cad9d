import { Agent, type Dispatcher } from 'undici';
import { IDLE_SOCKET_MS } from '../lib/keep-alive.ts';

/**
 * A lean transport for node-vault, plugged in through its documented
 * `'request-promise'` constructor option instead of its default axios +
 * follow-redirects stack (which costs several times the CPU per call).
 *
 * node-vault calls `transport.defaults(rpDefaults)` once and then the
 * returned function with request-promise-style options for every request:
 * `method`, `uri`, `headers`, `json` (the body object, or `true` for none),
 * `timeout`, `strictSSL` (false only under `VAULT_SKIP_VERIFY`); it expects
 * `{ statusCode, body, request: { path } }` back, whatever the status.
 *
 * Requests go to undici's `dispatch` (an `Agent` of keep-alive connections
 * per Vault address, one per certificate-check setting) with a handler that
 * collects the body: the client spends about a third less CPU per call
 * than over node:http (the broker about a tenth less per issue), while
 * undici's `request()`, a promise, a body stream and an AbortSignal per
 * call, gained nothing (docs/benchmarks.md, fifth round). Bodies are JSON both ways; a response that is empty is `''`,
 * one that is not JSON is its text. Redirects are not followed (node-vault
 * then rejects with the 3xx status). Every request has an overall deadline;
 * when it passes, the request rejects with `code: 'ETIMEDOUT'` and is
 * aborted (at once, or when it gets a connection). Connection errors keep their
 * `code` (ECONNREFUSED, ECONNRESET, undici's UND_ERR_SOCKET, …). Every
 * rejection is an Error made here from a code and a message: none is
 * undici's own, so none carries the request's headers, and so none carries a
 * token.
 */
export interface HttpTransportOptions {
  /** Deadline per request when the request names none (default 5000 ms). */
  timeoutMs?: number;
  /** Concurrent sockets per Vault address (default 32). */
  maxSockets?: number;
  /** Largest response body accepted (default 8 MiB); larger fails the request. */
  maxResponseBytes?: number;
}

/** The subset of request-promise options node-vault sends. */
export interface RpOptions {
  method?: string;
  uri?: string;
  headers?: Record<string, string | undefined>;
  /** The body, or `true` (request-promise's "parse the answer as JSON") when there is none. */
  json?: unknown;
  timeout?: number;
  /** false disables certificate checks (node-vault sets it from VAULT_SKIP_VERIFY). */
  strictSSL?: boolean;
  [key: string]: unknown;
}

export interface RpResponse {
  statusCode: number;
  body: unknown;
  request: { path: string };
}

export type RequestFn = (options: RpOptions) => Promise<RpResponse>;

export interface HttpTransport {
  /** request-promise's `defaults()`: what node-vault calls once at construction. */
  defaults(defaults: RpOptions): RequestFn;
  /** Destroys every pooled socket. The transport stays usable (new sockets are opened on demand). */
  close(): void;
}

const DEFAULT_TIMEOUT_MS = 5_000;
const DEFAULT_MAX_SOCKETS = 32;
const DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024;
/** An Error with a Node-style `code`, as toVaultError expects. */
function codedError(code: string, message: string): Error & { code: string } {
  return Object.assign(new Error(message), { code });
}

function parseBody(text: string): unknown {
  if (text === '') return '';
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

function hasHeader(headers: Record<string, unknown>, lower: string): boolean {
  for (const k of Object.keys(headers)) if (k.toLowerCase() === lower) return true;
  return false;
}

export function createHttpTransport(opts: HttpTransportOptions = {}): HttpTransport {
  const defaultTimeout = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxBytes = opts.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  const connections = opts.maxSockets ?? DEFAULT_MAX_SOCKETS;
  /** By certificate checking (true: checked); made on first use, and again after close(). */
  const dispatchers = new Map<boolean, Agent>();
  const dispatcherFor = (strict: boolean): Agent => {
    let agent = dispatchers.get(strict);
    if (!agent) {
      agent = new Agent({
        connections,
        keepAliveTimeout: IDLE_SOCKET_MS,
        keepAliveMaxTimeout: IDLE_SOCKET_MS,
        connect: { rejectUnauthorized: strict },
      });
      dispatchers.set(strict, agent);
    }
    return agent;
  };

  function send(options: RpOptions, defaults: RpOptions): Promise<RpResponse> {
    let url: URL;
    try {
      url = new URL(String(options.uri));
    } catch {
      return Promise.reject(codedError('ERR_INVALID_URL', 'Vault request has an invalid URL'));
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      return Promise.reject(codedError('ERR_INVALID_PROTOCOL', `Vault address must be http: or https:, not ${url.protocol}`));
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(options.headers ?? {})) if (v !== undefined) headers[k] = v;
    if (!hasHeader(headers, 'accept')) headers['accept'] = 'application/json';
    const json = options.json;
    let payload: string | null = null;
    if (json !== undefined && json !== null && typeof json === 'object') {
      payload = JSON.stringify(json);
      if (!hasHeader(headers, 'content-type')) headers['content-type'] = 'application/json';
    }
    const strict = (options.strictSSL ?? defaults.strictSSL) !== false;
    const timeoutMs = options.timeout ?? defaults.timeout ?? defaultTimeout;

    return new Promise<RpResponse>((resolve, reject) => {
      /** The request on its connection (undefined while it waits for one). */
      let controller: Dispatcher.DispatchController | undefined;
      let settled = false;
      let statusCode = 0;
      const chunks: Buffer[] = [];
      let size = 0;
      const settle = (err: Error | undefined, response?: RpResponse) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(response!);
      };
      /** Rejects with `err` now, and aborts the request as soon as it has a connection. */
      const giveUp = (err: Error) => {
        settle(err);
        controller?.abort(err);
      };
      const timer = setTimeout(() => giveUp(codedError('ETIMEDOUT', `Vault request timed out after ${timeoutMs} ms`)), timeoutMs);
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart(c) {
          controller = c;
          if (settled) c.abort(codedError('ETIMEDOUT', 'Vault request given up before it was sent'));
        },
        onResponseStart(_c, status) {
          statusCode = status;
        },
        onResponseData(_c, chunk) {
          size += chunk.length;
          if (size > maxBytes) return giveUp(codedError('ERR_VAULT_RESPONSE_TOO_LARGE', `Vault response exceeds ${maxBytes} bytes`));
          chunks.push(chunk);
        },
        onResponseEnd() {
          const text = chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8');
          settle(undefined, { statusCode, body: parseBody(text), request: { path: url.pathname } });
        },
        onResponseError(_c, err) {
          settle(ownError(err));
        },
      };
      try {
        dispatcherFor(strict).dispatch(
          { origin: url.origin, path: `${url.pathname}${url.search}`, method: options.method ?? 'GET', headers, body: payload },
          handler,
        );
      } catch (err) {
        settle(ownError(err)); // undici reports its errors to the handler; this is in case one is thrown instead
      }
    });
  }

  return {
    defaults(defaults) {
      const fixed = { ...defaults };
      return (options) => send(options, fixed);
    },
    close() {
      for (const agent of dispatchers.values()) agent.destroy().catch(() => {});
      dispatchers.clear();
    },
  };
}

/** undici's failure as an Error of ours: its code (ECONNREFUSED, UND_ERR_SOCKET, …) and message, nothing else. */
function ownError(err: unknown): Error & { code: string } {
  const e = (err ?? {}) as { code?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? e.code : 'ERR_VAULT_TRANSPORT';
  return codedError(code, typeof e.message === 'string' ? e.message : 'Vault request failed');
}
