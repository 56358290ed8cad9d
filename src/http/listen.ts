import { serve } from '@hono/node-server';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Hono } from 'hono';

/** What a {@link ListenError} says besides the address: who could not listen, and what to change. */
export interface ListenErrorWording {
  /** Prefixed: "the development Vault". */
  what?: string;
  /** Appended: "set JIT_DEV_VAULT_PORT". */
  hint?: string;
}

/** A server that could not listen: the message is one line naming the address, the reason and what to change. */
export class ListenError extends Error {
  constructor(
    readonly host: string,
    readonly port: number,
    readonly code: string,
    wording: ListenErrorWording = {},
  ) {
    const address = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    super(`${wording.what ? `${wording.what} ` : ''}cannot listen on ${address}: ${LISTEN_REASONS[code] ?? 'failed'} (${code})${wording.hint ? `; ${wording.hint}` : ''}`);
    this.name = 'ListenError';
  }
}

const LISTEN_REASONS: Record<string, string> = {
  EADDRINUSE: 'the address is already in use',
  EADDRNOTAVAIL: 'the address is not available on this machine',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  ENOTFOUND: 'the host name does not resolve',
  EAI_AGAIN: 'the host name does not resolve',
};

/** Turns a failed bind or listen (`err.code` EADDRINUSE, …) into a {@link ListenError}; any other error is returned as it is. */
export function toListenError(err: unknown, host: string, port: number, wording?: ListenErrorWording): unknown {
  const { code, syscall } = (err ?? {}) as NodeJS.ErrnoException;
  if (!code || !(code in LISTEN_REASONS || syscall === 'listen' || syscall === 'bind' || syscall === 'getaddrinfo')) return err;
  return new ListenError(host, port, code, wording);
}

/** The broker's own API: JIT_HOST and JIT_PORT say where. */
const API_WORDING: ListenErrorWording = { hint: 'set JIT_HOST/JIT_PORT' };

/**
 * Serves the broker's API `app` on host:port (port 0: a free one) and
 * resolves once listening; `close()` ends open connections too. Rejects with
 * a {@link ListenError} when the address cannot be had, holding nothing.
 */
export async function listen(app: Pick<Hono<never>, 'fetch'>, host: string, port: number): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const server = await new Promise<Server>((resolve, reject) => {
    const failed = (err: Error) => {
      s.close();
      reject(toListenError(err, host, port, API_WORDING));
    };
    const s = serve({ fetch: app.fetch, hostname: host, port }, () => {
      // Later 'error' events (EMFILE on accept, say) are not a failed start.
      s.off('error', failed);
      resolve(s as Server);
    }) as Server;
    s.once('error', failed);
  });
  const address = server.address() as AddressInfo;
  return {
    server,
    url: `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
