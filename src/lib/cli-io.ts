/** What a CLI command may touch: its environment and two output lines. Injected for tests. */
export interface CliIo {
  env: Record<string, string | undefined>;
  /** One line to stdout. Throws OutputClosed once stdout's reader has gone away. */
  out(line: string): void;
  err(line: string): void;
}

/**
 * stdout's reader went away (`jit audit export | head -1` after its line):
 * the command stops at its next write and jit exits quietly with
 * EXIT_OUTPUT_CLOSED, as a tool killed by SIGPIPE would (Node ignores
 * SIGPIPE, so the write fails with EPIPE instead).
 */
export class OutputClosed extends Error {
  constructor() {
    super('stdout was closed by its reader');
  }
}

/** 128 + SIGPIPE: what a shell shows for a writer whose reader closed the pipe. */
export const EXIT_OUTPUT_CLOSED = 141;

let processIo: CliIo | undefined;

/**
 * The process's own environment, stdout and stderr. A write to a pipe whose
 * reader has gone fails with EPIPE: the stream is marked errored at once
 * (so the next `out` throws OutputClosed and a long export stops there) and
 * emits 'error' a tick later, which would otherwise crash jit with a stack
 * trace; here it ends the process quietly with EXIT_OUTPUT_CLOSED. Pipes to
 * stdout are written synchronously on Linux, so nothing written before is lost.
 */
export function getProcessIo(): CliIo {
  if (processIo) return processIo;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(EXIT_OUTPUT_CLOSED);
    process.stderr.write(`jit: cannot write to stdout: ${err.message}\n`);
    process.exit(1);
  });
  processIo = {
    env: process.env,
    out: (line) => {
      if (process.stdout.errored) throw new OutputClosed();
      process.stdout.write(`${line}\n`);
    },
    err: (line) => void process.stderr.write(`${line}\n`),
  };
  return processIo;
}
