import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Fault = 'reset' | { status: number; body?: unknown };

/**
 * An HTTP proxy on loopback in front of a real server (the development
 * Vault), so tests can make individual calls fail at the protocol level —
 * a dropped connection or an error status — without mocking any module.
 */
export async function startFaultProxy(upstream: string): Promise<{
  url: string;
  /** Decide per request; return undefined to forward it. */
  setFault(fn: ((method: string, path: string) => Fault | undefined) | undefined): void;
  seen: { method: string; path: string }[];
  close(): Promise<void>;
}> {
  const target = new URL(upstream);
  let fault: ((method: string, path: string) => Fault | undefined) | undefined;
  const seen: { method: string; path: string }[] = [];
  const server: Server = createServer((req, res) => {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    seen.push({ method, path });
    const f = fault?.(method, path);
    if (f === 'reset') {
      req.socket.destroy();
      return;
    }
    if (f) {
      res.writeHead(f.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(f.body ?? { errors: ['injected fault'] }));
      return;
    }
    const up = httpRequest(
      { host: target.hostname, port: target.port, method, path, headers: { ...req.headers, host: target.host } },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on('error', () => req.socket.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    setFault: (fn) => (fault = fn),
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
