import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * What the proxy does with one call: pass it on, drop the connection before
 * it reaches the upstream, answer with an error status, or — what
 * test/fakes/fault-proxy.ts cannot — let the upstream do the work and then
 * lose the answer (the connection dies on the way back), as when a network
 * fails or the caller dies just after the server acted. `onLost` runs
 * before the lost answer's connection is dropped, and `onHeld` before a
 * held request's ('hold-request': never forwarded) — a test can SIGKILL
 * the caller right there, at an exact point of its work.
 */
export type ProxyAction = 'forward' | 'reset' | 'lose-response' | 'hold-request' | { status: number; body?: unknown };

export interface LostResponse {
  method: string;
  path: string;
  status: number;
  /** What the caller never saw (e.g. the token Vault created). Test use only. */
  body: string;
}

export interface ChaosProxy {
  url: string;
  setAction(fn: ((method: string, path: string) => ProxyAction) | undefined): void;
  onLost?: ((r: LostResponse) => unknown) | undefined;
  onHeld?: ((method: string, path: string) => unknown) | undefined;
  lost: LostResponse[];
  close(): Promise<void>;
}

export async function startChaosProxy(upstream: string): Promise<ChaosProxy> {
  const target = new URL(upstream);
  let decide: ((method: string, path: string) => ProxyAction) | undefined;
  const lost: LostResponse[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const action = decide?.(method, path) ?? 'forward';
    if (action === 'reset') {
      req.socket.destroy();
      return;
    }
    if (action === 'hold-request') {
      void Promise.resolve(proxy.onHeld?.(method, path)).finally(() => req.socket.destroy());
      return;
    }
    if (typeof action === 'object') {
      res.writeHead(action.status, { 'content-type': 'application/json' }).end(JSON.stringify(action.body ?? { errors: ['injected fault'] }));
      return;
    }
    const up = httpRequest({ host: target.hostname, port: target.port, method, path, headers: { ...req.headers, host: target.host } }, (upRes) => {
      if (action === 'lose-response') {
        const chunks: Buffer[] = [];
        upRes.on('data', (c: Buffer) => chunks.push(c));
        upRes.on('end', () => {
          const record = { method, path, status: upRes.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') };
          lost.push(record);
          void Promise.resolve(proxy.onLost?.(record)).finally(() => req.socket.destroy());
        });
        return;
      }
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    up.on('error', () => req.socket.destroy());
    req.pipe(up);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const proxy: ChaosProxy = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    setAction: (fn) => (decide = fn),
    lost,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
  return proxy;
}
