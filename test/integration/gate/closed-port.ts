import { freePort } from '../../helpers/net.ts';

/**
 * The URL of a loopback port nothing listens on (bound on port 0, then
 * closed), so connecting is refused (ECONNREFUSED), as with a broker that
 * is down. (Port 9, the usual stand-in, is one fetch refuses to try.)
 */
export async function closedPortUrl(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}`;
}
