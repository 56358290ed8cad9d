import { createServer } from 'node:net';

/**
 * A free TCP port on 127.0.0.1: bind port 0, read it, close. For a server
 * that must keep its port across restarts (one URL for its whole life).
 * No vitest import: bench/ uses it too (through postgres-server.ts).
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}
