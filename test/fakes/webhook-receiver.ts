import { randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Jwks } from '../../src/keys/key-ring.ts';
import { verifyWebhook, type VerifyResult } from '../../src/webhooks/sign.ts';

/** What the receiver does with one request; scripted answers are used in order, then the default. */
export type Behaviour =
  | { status: number; headers?: Record<string, string>; body?: string }
  /** Reads the request and never answers (until close). */
  | { hang: true }
  /** Drops the connection without an answer. */
  | { reset: true };

export interface ReceivedWebhook {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** Signature check against the JWKS at the time of receipt. */
  verification: VerifyResult;
  /** Real time of receipt (ms). */
  receivedAt: number;
  answer: number | 'hang' | 'reset';
}

export interface WebhookReceiver {
  url: string;
  requests: ReceivedWebhook[];
  script(...behaviours: Behaviour[]): void;
  waitForRequests(n: number, timeoutMs?: number): Promise<ReceivedWebhook[]>;
  close(): Promise<void>;
}

/**
 * A real HTTP webhook receiver on 127.0.0.1, port 0. It verifies every
 * delivery's Standard Webhooks signature against `jwks` (node:crypto), and
 * records what it saw. With `bearer` set it behaves like OpenClaw's hooks
 * endpoint: a wrong or missing `Authorization: Bearer` gets 401 text/plain,
 * and the default answer is `200 {ok:true, runId}`.
 */
export async function startWebhookReceiver(opts: {
  jwks: Jwks | (() => Jwks);
  /** Clock for the timestamp tolerance check (ms); default Date.now. */
  now?: () => number;
  bearer?: string;
} = { jwks: { keys: [] } }): Promise<WebhookReceiver> {
  const requests: ReceivedWebhook[] = [];
  const queue: Behaviour[] = [];
  const sockets = new Set<Socket>();
  const waiters: (() => void)[] = [];

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const jwks = typeof opts.jwks === 'function' ? opts.jwks() : opts.jwks;
      const record: ReceivedWebhook = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body,
        verification: verifyWebhook(req.headers, body, jwks, { now: (opts.now ?? Date.now)() }),
        receivedAt: Date.now(),
        answer: 200,
      };
      requests.push(record);
      for (const w of waiters.splice(0)) w();

      if (opts.bearer !== undefined && req.headers.authorization !== `Bearer ${opts.bearer}`) {
        record.answer = 401;
        res.writeHead(401, { 'content-type': 'text/plain' }).end('Unauthorized');
        return;
      }
      const b = queue.shift() ?? { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ok: true, runId: randomUUID() }) };
      if ('hang' in b) {
        record.answer = 'hang';
        return;
      }
      if ('reset' in b) {
        record.answer = 'reset';
        req.socket.destroy();
        return;
      }
      record.answer = b.status;
      res.writeHead(b.status, b.headers ?? {}).end(b.body ?? '');
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    script: (...behaviours) => void queue.push(...behaviours),
    async waitForRequests(n, timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      while (requests.length < n) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`receiver saw ${requests.length} requests, expected ${n}`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          waiters.push(() => (clearTimeout(t), resolve()));
        });
      }
      return requests;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
