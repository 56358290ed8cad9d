import { startDevVault } from '../../vault/dev/index.ts';
import type { CliIo } from '../../lib/cli-io.ts';
import { UsageError, parseCommandArgs } from '../../lib/cli-args.ts';

const USAGE = 'jit dev-vault [--port 8200] [--root-token root]';

/** The development Vault, standalone, in the foreground. Loopback only, in memory. */
export async function devVaultCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { port: { type: 'string' }, 'root-token': { type: 'string' } }, USAGE);
  if (values.help) return (io.out(`usage: ${USAGE}`), 0);
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"\nusage: ${USAGE}`);
  const port = values.port === undefined ? 8200 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError('--port must be a port number (0-65535)');
  const rootToken = (values['root-token'] as string | undefined) ?? 'root';
  const server = await startDevVault({ host: '127.0.0.1', port, rootToken });
  io.out('WARNING: development Vault. In memory, loopback only, not for production.');
  io.out(`Address:    ${server.url}`);
  io.out(`Root token: ${server.rootToken}`);
  io.out(`export VAULT_ADDR='${server.url}'`);
  return new Promise<number>((resolve) => {
    const shutdown = () => void server.close().then(() => resolve(0));
    process.once('SIGINT', shutdown);
    process.once('SIGTERM', shutdown);
  });
}
