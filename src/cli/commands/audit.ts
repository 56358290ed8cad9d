import { closeSync, openSync, writeSync } from 'node:fs';
import { auditEntries, verifyAuditChain } from '../../broker/audit.ts';
import { KeyRingError, createKeyRing, type Jwks } from '../../webhooks/keys.ts';
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
      // Signed heads are checked against the public keys the ring holds (current, and previous within their grace period).
      let jwks: Jwks = { keys: [] };
      try {
        jwks = createKeyRing({ config: ctx.config, readOnly: true }).jwks();
      } catch (err) {
        if (!(err instanceof KeyRingError)) throw err;
        io.err(`note: signed heads cannot be checked: ${err.message}`);
      }
      const verdict = verifyAuditChain(ctx.db, { jwks, onProgress: (n) => io.err(`… ${n} entries verified`) });
      const { heads } = verdict;
      if (heads.unchecked > 0) {
        io.err(`note: ${heads.unchecked} signed head(s) not checked: key(s) ${heads.unknownKids.join(', ')} not in the key ring (revoked, retired past the grace period, or this is another host's database)`);
      }
      if (!verdict.ok) {
        io.err(`audit log TAMPERED at entry ${verdict.seq}: ${verdict.problem}`);
        return 1;
      }
      io.out(`audit log intact: ${verdict.entries} entries`);
      const newest = heads.newest;
      io.out(newest ? `newest signed head: entry ${newest.seq}, signed ${new Date(newest.at).toISOString()} with key ${newest.kid} (${heads.checked} signed heads checked)` : 'no signed head checked: removal of entries from the end cannot be detected');
      return 0;
    }
    // JSON Lines, one entry per line, to a file or stdout.
    const output = values.output as string | undefined;
    const fd = output ? openSync(output, 'w', 0o600) : undefined;
    let n = 0;
    try {
      for (const entry of auditEntries(ctx.db, since)) {
        const line = `${JSON.stringify(entry)}\n`;
        if (fd === undefined) process.stdout.write(line);
        else writeSync(fd, line);
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
