/**
 * The development Vault for the benchmark, as its own process on
 * 127.0.0.1 (a free port): `startDevVault` from src/vault/dev, with one
 * change. The development Vault's token store sweeps every token for
 * expiry on every request (TokenStore.sweep, called by get()), so its cost
 * per request grows with the number of live tokens — thousands after a few
 * seconds of load — which a real Vault's does not, and which would
 * penalise whichever side of a comparison mints more tokens. Here that
 * sweep runs at most once a second. The benchmark's tokens live 10
 * minutes, so nothing it does depends on a token expiring sooner.
 * `npm run bench -- --stock-dev-vault` uses `jit dev-vault` unchanged.
 *
 * Prints the same `Address:` line as `jit dev-vault`; stops on SIGTERM.
 */
import { parseArgs } from 'node:util';
import { startDevVault } from '../src/vault/dev/index.ts';
import { TokenStore } from '../src/vault/dev/token-store.ts';

const { values } = parseArgs({ options: { 'root-token': { type: 'string' } } });
const sweep = TokenStore.prototype.sweep;
const lastSweep = new WeakMap<TokenStore, number>();
TokenStore.prototype.sweep = function throttledSweep(this: TokenStore): void {
  const now = Date.now();
  if (now - (lastSweep.get(this) ?? 0) < 1_000) return;
  lastSweep.set(this, now);
  sweep.call(this);
};

const server = await startDevVault({ host: '127.0.0.1', port: 0, ...(values['root-token'] ? { rootToken: values['root-token'] } : {}) });
process.stdout.write(`DEVELOPMENT Vault for the benchmark (expiry sweep at most once a second)\nAddress:    ${server.url}\n`);
process.once('SIGTERM', () => void server.close());
