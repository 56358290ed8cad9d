import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface SeenCall {
  method: string;
  path: string;
  lastEventId: string | undefined;
  at: number;
}

/**
 * A streaming HTTP proxy on loopback in front of the broker: it records
 * every call (method, path, Last-Event-ID) so a test can count the calls
 * per route (no GET polling), and it can cut every connection it carries
 * mid-stream (`cut()`) and hold new ones back (`hold()` … `release()`),
 * to make a decision stream drop and reconnect at a chosen moment.
 */
export async function startCountingProxy(upstream: string): Promise<{
  url: string;
  seen: SeenCall[];
  /** Calls of `method` whose path (query excluded) matches `path` exactly. */
  count(method: string, path: string): number;
  cut(): void;
  hold(): void;
  release(): void;
  close(): Promise<void>;
}> {
  const target = new URL(upstream);
  const seen: SeenCall[] = [];
  const open = new Set<Socket>();
  let held: (() => void)[] | undefined;
  const forward = (req: IncomingMessage, res: import('node:http').ServerResponse) => {
    const up = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      res.flushHeaders();
      upRes.pipe(res);
      res.once('close', () => upRes.destroy());
    });
    up.on('error', () => req.socket.destroy());
    req.pipe(up);
  };
  const server: Server = createServer((req, res) => {
    const lei = req.headers['last-event-id'];
    seen.push({ method: req.method ?? 'GET', path: (req.url ?? '/').split('?')[0]!, lastEventId: Array.isArray(lei) ? lei[0] : lei, at: Date.now() });
    open.add(req.socket);
    req.socket.once('close', () => open.delete(req.socket));
    if (held) held.push(() => forward(req, res));
    else forward(req, res);
  });
  server.keepAliveTimeout = 1;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    count: (method, path) => seen.filter((c) => c.method === method && c.path === path).length,
    cut: () => {
      for (const s of open) s.destroy();
    },
    hold: () => void (held ??= []),
    release: () => {
      const waiting = held ?? [];
      held = undefined;
      for (const go of waiting) go();
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
