import { closeSync, openSync, writeSync } from 'node:fs';
import { auditEntries, verifyAuditChain } from '../../broker/audit.ts';
import { openCliContext } from '../context.ts';
import type { CliIo } from '../io.ts';
import { UsageError, parseCommandArgs } from '../main.ts';

const USAGE = 'jit audit verify | jit audit export [--output FILE] [--since SEQ]';

export async function auditCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { output: { type: 'string', short: 'o' }, since: { type: 'string' } }, USAGE);
  if (values.help) return (io.out(`usage: ${USAGE}`), 0);
  const [sub, ...extra] = positionals;
  if ((sub !== 'verify' && sub !== 'export') || extra.length > 0) throw new UsageError(`usage: ${USAGE}`);
  const since = values.since === undefined ? 0 : Number(values.since);
  if (!Number.isInteger(since) || since < 0) throw new UsageError('--since must be an audit sequence number (0 or more)');
  const ctx = openCliContext(io);
  try {
    if (sub === 'verify') {
      const verdict = verifyAuditChain(ctx.db, (n) => io.err(`… ${n} entries verified`));
      if (verdict.ok) {
        io.out(`audit log intact: ${verdict.entries} entries`);
        return 0;
      }
      io.err(`audit log TAMPERED at entry ${verdict.seq}: ${verdict.problem}`);
      return 1;
    }
    // JSON Lines, one entry per line, to a file or stdout. On stdout, io.out
    // throws OutputClosed once the reader is gone (`| head`), which ends the
    // export there instead of reading the rest of the log for nobody.
    const output = values.output as string | undefined;
    const fd = output ? openSync(output, 'w', 0o600) : undefined;
    let n = 0;
    try {
      for (const entry of auditEntries(ctx.db, since)) {
        const line = JSON.stringify(entry);
        if (fd === undefined) io.out(line);
        else writeSync(fd, `${line}\n`);
        if (++n % 100_000 === 0) io.err(`… ${n} entries exported`);
      }
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    if (output) io.err(`exported ${n} audit entries to ${output}`);
    return 0;
  } finally {
    ctx.close();
  }
}
