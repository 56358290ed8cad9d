import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ScriptedResponse {
  status: number;
  headers?: Record<string, string>;
  /** An object is sent as JSON (problem+json for 4xx/5xx); a string as is. */
  body?: unknown;
}

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * A real HTTP server on 127.0.0.1 that answers the scripted responses in
 * order (500 once they run out) and records every request it saw.
 */
export async function startScriptedServer(script: ScriptedResponse[]): Promise<{ url: string; seen: SeenRequest[]; close(): Promise<void> }> {
  const seen: SeenRequest[] = [];
  const queue = [...script];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const next = queue.shift() ?? { status: 500, body: { title: 'Script exhausted', status: 500, detail: 'no more scripted responses' } };
      const headers: Record<string, string> = { ...next.headers };
      let text = '';
      if (typeof next.body === 'string') text = next.body;
      else if (next.body !== undefined) {
        text = JSON.stringify(next.body);
        headers['content-type'] ??= next.status >= 400 ? 'application/problem+json' : 'application/json';
      }
      res.writeHead(next.status, headers).end(text);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A port on 127.0.0.1 that nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A problem+json body as the broker writes it. */
export function problem(status: number, code: string, title: string, detail: string, extra: Record<string, unknown> = {}) {
  return { type: `urn:jit-broker:problem:${code.toLowerCase().replaceAll('_', '-')}`, title, status, detail, code, ...extra };
}
