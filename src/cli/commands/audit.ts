import { verifyAuditChain } from '../../broker/audit.ts';
import { openCliContext } from '../context.ts';
import type { CliIo } from '../io.ts';
import { UsageError, parseCommandArgs } from '../main.ts';

const USAGE = 'jit audit verify';

export async function auditCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {}, USAGE);
  if (values.help) return (io.out(`usage: ${USAGE}`), 0);
  if (positionals[0] !== 'verify' || positionals.length > 1) throw new UsageError(`usage: ${USAGE}`);
  const ctx = openCliContext(io);
  try {
    const verdict = verifyAuditChain(ctx.db);
    if (verdict.ok) {
      io.out(`audit log intact: ${verdict.entries} entries`);
      return 0;
    }
    io.err(`audit log TAMPERED at entry ${verdict.seq}: ${verdict.problem}`);
    return 1;
  } finally {
    ctx.close();
  }
}
