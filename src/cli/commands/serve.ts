import { StartupError, startBroker } from '../../main.ts';
import type { CliIo } from '../../lib/cli-io.ts';
import { UsageError, parseCommandArgs } from '../../lib/cli-args.ts';

const USAGE = 'jit serve';

/** Runs the broker until SIGINT/SIGTERM; SIGHUP reloads the policy files. */
export async function serveCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {}, USAGE);
  if (values.help) return (io.out(`usage: ${USAGE}\nConfiguration comes from the environment; see the README.`), 0);
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  let broker;
  try {
    broker = await startBroker(io.env, { print: io.out });
  } catch (err) {
    if (err instanceof StartupError) {
      io.err(`jit serve: ${err.message}`);
      return 1;
    }
    throw err;
  }
  const running = broker;
  process.on('SIGHUP', () => running.reloadPolicies());
  const exitCode = new Promise<number>((resolve) => {
    const shutdown = () => {
      running.stop().then(() => resolve(0), () => resolve(1));
    };
    process.once('SIGINT', shutdown);
    process.once('SIGTERM', shutdown);
  });
  // Announced only once the handlers are in place: whoever waits for this line may signal at once
  // (a supervisor, a test), and a SIGTERM before them would kill the broker without stopping it.
  io.out(`jit-broker listening on ${broker.url}`);
  return exitCode;
}
