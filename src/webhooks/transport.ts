import http from 'node:http';
import https from 'node:https';
import { keepAliveAgents } from '../lib/keep-alive.ts';

/**
 * How the dispatcher sends one attempt. Whatever the transport, redirects
 * are not followed (a 3xx is a failed attempt, as Standard Webhooks says):
 * following one would let the receiver send the broker, with its bearer
 * token, somewhere else.
 */
export interface TransportRequest {
  url: string;
  method: 'POST';
  headers: Record<string, string>;
  body: string;
  /** Aborted on the per-attempt timeout and when the dispatcher stops. */
  signal: AbortSignal;
}

export interface TransportResponse {
  status: number;
  headers: { get(name: string): string | null };
  /** The start of the response body (for the error reason); may be empty. */
  body: string;
}

export type Transport = (req: TransportRequest) => Promise<TransportResponse>;

/** The most of a response body kept (for the error reason). */
const MAX_RESPONSE_BYTES = 2048;

/**
 * The dispatcher's default transport: node:http / node:https with one
 * keep-alive agent per protocol, so a busy receiver gets its events over a
 * few reused connections (global fetch cost about four times the CPU per
 * request). Redirects are never followed (node:http does not
 * follow them). The response body is read up to 2 KiB; a longer one is cut
 * off and its connection closed. `close()` drops the pooled sockets (idle
 * ones never keep the process alive).
 */
export function createHttpTransport(): Transport & { close(): void } {
  const agents = keepAliveAgents();
  const send: Transport = (req) =>
    new Promise((resolve, reject) => {
      const url = new URL(req.url);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`unsupported URL scheme ${url.protocol}`);
      const options = {
        method: req.method,
        headers: { ...req.headers, 'content-length': String(Buffer.byteLength(req.body)) },
        agent: agents.agentFor(url),
        signal: req.signal,
      };
      const request = (url.protocol === 'https:' ? https : http).request(url, options, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        let settled = false;
        const settle = () => {
          settled = true;
          resolve({
            status: res.statusCode ?? 0,
            headers: {
              get(name) {
                const v = res.headers[name.toLowerCase()];
                return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
              },
            },
            body: Buffer.concat(chunks).subarray(0, MAX_RESPONSE_BYTES).toString('utf8'),
          });
        };
        res.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          size += chunk.length;
          if (size >= MAX_RESPONSE_BYTES) {
            res.destroy(); // enough for the reason; the rest is not read, so the connection is not reused
            settle();
          }
        });
        res.on('end', settle);
        // After settle() these change nothing (and build no Error: 'close' follows every response).
        res.on('error', reject);
        res.on('close', () => {
          if (!settled) reject(new Error('connection closed before the response was complete'));
        });
      });
      request.on('error', reject);
      request.end(req.body);
    });
  return Object.assign(send, {
    close: () => agents.destroy(),
  });
}
