import cluster from 'node:cluster';
import { reportStartupFailure, startHttpWorker } from '../../cluster/worker.ts';
import { StartupError, startBroker } from '../../main.ts';
import type { CliIo } from '../../lib/cli-io.ts';
import { UsageError, parseCommandArgs } from '../../lib/cli-args.ts';

const USAGE = 'jit serve';

/** Runs the broker until SIGINT/SIGTERM; SIGHUP reloads the policy files. */
export async function serveCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {}, USAGE);
  if (values.help) return (io.out(`usage: ${USAGE}\nConfiguration comes from the environment; see the README.`), 0);
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  if (cluster.isWorker) return serveAsWorker(io);
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

/** An HTTP worker forked by a primary started with JIT_HTTP_WORKERS > 1 (src/cluster/worker.ts). */
async function serveAsWorker(io: CliIo): Promise<number> {
  let worker;
  try {
    worker = await startHttpWorker(io.env);
  } catch (err) {
    // The primary prints it as `jit serve`'s one line; printed here only if the primary is gone.
    const message = err instanceof Error ? err.message : String(err);
    if (!(await reportStartupFailure(message))) io.err(`jit serve (HTTP worker): ${message}`);
    return 1;
  }
  // Signals go to the primary, which stops the workers first; one sent to a worker alone stops it too.
  const running = worker;
  process.once('SIGINT', () => void running.stop());
  process.once('SIGTERM', () => void running.stop());
  process.on('SIGHUP', () => {});
  await running.stopped;
  if (process.connected) process.disconnect();
  return 0;
}
