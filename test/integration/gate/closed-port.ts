import { createServer } from 'node:net';

/**
 * The URL of a loopback port nothing listens on: bound on port 0, then
 * closed, so connecting is refused (ECONNREFUSED), as with a broker that
 * is down. (Port 9, the usual stand-in, is one fetch refuses to try.)
 */
export function closedPortUrl(): Promise<string> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(`http://127.0.0.1:${port}`));
    });
  });
}
