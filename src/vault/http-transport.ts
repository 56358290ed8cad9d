import http from 'node:http';
import https from 'node:https';
import { keepAliveAgents } from '../lib/keep-alive.ts';

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
 * Requests go over node:http / node:https with one keep-alive agent per
 * protocol. Bodies are JSON both ways; a response that is empty is `''`, one
 * that is not JSON is its text. Redirects are not followed (node-vault then
 * rejects with the 3xx status). Every request has an overall deadline; when
 * it passes, the request is destroyed and rejects with `code: 'ETIMEDOUT'`.
 * Socket errors keep their `code` (ECONNREFUSED, ECONNRESET, …). No error
 * carries the request's headers, so none carries a token.
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
  const agents = keepAliveAgents({ maxSockets: opts.maxSockets ?? DEFAULT_MAX_SOCKETS });

  function send(options: RpOptions, defaults: RpOptions): Promise<RpResponse> {
    return new Promise<RpResponse>((resolve, reject) => {
      let url: URL;
      try {
        url = new URL(String(options.uri));
      } catch {
        reject(codedError('ERR_INVALID_URL', 'Vault request has an invalid URL'));
        return;
      }
      const secure = url.protocol === 'https:';
      if (!secure && url.protocol !== 'http:') {
        reject(codedError('ERR_INVALID_PROTOCOL', `Vault address must be http: or https:, not ${url.protocol}`));
        return;
      }
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(options.headers ?? {})) if (v !== undefined) headers[k] = v;
      if (!hasHeader(headers, 'accept')) headers['accept'] = 'application/json';
      const json = options.json;
      let payload: string | undefined;
      if (json !== undefined && json !== null && typeof json === 'object') {
        payload = JSON.stringify(json);
        if (!hasHeader(headers, 'content-type')) headers['content-type'] = 'application/json';
        headers['content-length'] = String(Buffer.byteLength(payload));
      }
      const strict = (options.strictSSL ?? defaults.strictSSL) !== false;
      const timeoutMs = options.timeout ?? defaults.timeout ?? defaultTimeout;

      const req = (secure ? https : http).request(url, {
        method: options.method ?? 'GET',
        headers,
        agent: agents.agentFor(url, strict),
      });
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(err);
      };
      /** Rejects with `err` (not whatever the destroyed socket reports next) and drops the socket. */
      const abort = (err: Error) => {
        fail(err);
        req.destroy();
      };
      const timer = setTimeout(() => abort(codedError('ETIMEDOUT', `Vault request timed out after ${timeoutMs} ms`)), timeoutMs);
      req.on('error', fail);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBytes) return abort(codedError('ERR_VAULT_RESPONSE_TOO_LARGE', `Vault response exceeds ${maxBytes} bytes`));
          chunks.push(chunk);
        });
        res.on('error', fail);
        // A response cut short without an 'error' (settled already when it ended normally).
        res.on('close', () => {
          if (!settled) fail(codedError('ECONNRESET', 'Vault closed the connection mid-response'));
        });
        res.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          const text = chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8');
          resolve({ statusCode: res.statusCode ?? 0, body: parseBody(text), request: { path: url.pathname } });
        });
      });
      req.end(payload);
    });
  }

  return {
    defaults(defaults) {
      const fixed = { ...defaults };
      return (options) => send(options, fixed);
    },
    close: () => agents.destroy(),
  };
}
