import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { z } from 'zod';
import type { Config } from '../../config/config.ts';
import { auditEntries, verifyAuditChain } from '../../broker/audit.ts';
import { KeyRingError, type Jwks } from '../../keys/key-ring.ts';
import { openKeyRing, type KeyRingStore } from '../../keys/key-ring-db.ts';
import { openCliContext } from '../context.ts';
import type { CliIo } from '../../lib/cli-io.ts';
import { UsageError, parseCommandArgs } from '../../lib/cli-args.ts';

const USAGE = 'jit audit verify [--jwks FILE] | jit audit export [--output FILE] [--since SEQ]';

export async function auditCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { output: { type: 'string', short: 'o' }, since: { type: 'string' }, jwks: { type: 'string' } }, USAGE);
  if (values.help) return (io.out(`usage: ${USAGE}`), 0);
  const [sub, ...extra] = positionals;
  if ((sub !== 'verify' && sub !== 'export') || extra.length > 0) throw new UsageError(`usage: ${USAGE}`);
  const since = values.since === undefined ? 0 : Number(values.since);
  if (!Number.isInteger(since) || since < 0) throw new UsageError('--since must be an audit sequence number (0 or more)');
  const ctx = await openCliContext(io);
  try {
    if (sub === 'verify') {
      const jwks = await headKeys(ctx, values.jwks as string | undefined, io);
      const verdict = await verifyAuditChain(ctx.storage, { jwks, onProgress: (n) => io.err(`… ${n} entries verified`) });
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
      io.out(
        newest
          ? `newest signed head: entry ${newest.seq}, signed ${new Date(newest.at).toISOString()} with key ${newest.kid} (${heads.checked} signed heads checked; ${verdict.entries - newest.seq} newer entries not signed yet)`
          : 'no signed head checked: removal of entries from the end cannot be detected',
      );
      return 0;
    }
    // JSON Lines, one entry per line, to a file or stdout. On stdout, io.out
    // throws OutputClosed once the reader is gone (`| head`), which ends the
    // export there instead of reading the rest of the log for nobody.
    const output = values.output as string | undefined;
    const fd = output ? openSync(output, 'w', 0o600) : undefined;
    let n = 0;
    try {
      for await (const entry of auditEntries(ctx.storage, since)) {
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
    await ctx.close();
  }
}

/** Public keys only, as served at `/.well-known/jwks.json`. */
const JwksFile = z
  .object({
    keys: z.array(
      z
        .object({ kty: z.literal('OKP'), crv: z.literal('Ed25519'), x: z.string().regex(/^[A-Za-z0-9_-]{43}$/), kid: z.string().min(1), use: z.literal('sig').optional(), alg: z.literal('EdDSA').optional() })
        .strict(),
    ),
  })
  .strict();

/**
 * The public keys signed audit heads are checked against: a JWKS file the
 * operator kept elsewhere (`--jwks`, so a rewritten key file on this host
 * cannot vouch for a rewritten chain), or else the key ring next to the
 * database (the current key and previous keys within their grace period).
 */
async function headKeys(ctx: { config: Config; storage: { signingKeys: KeyRingStore | undefined } }, file: string | undefined, io: CliIo): Promise<Jwks> {
  if (file !== undefined) {
    let parsed: z.infer<typeof JwksFile>;
    try {
      parsed = JwksFile.parse(JSON.parse(readFileSync(file, 'utf8')));
    } catch (err) {
      const why = err instanceof z.ZodError ? `${err.issues[0]!.path.join('.') || '(root)'}: ${err.issues[0]!.message}` : (err as Error).message;
      throw new UsageError(`--jwks ${file}: not a JWKS of Ed25519 public keys (${why})`);
    }
    return { keys: parsed.keys.map((k) => ({ ...k, use: 'sig' as const, alg: 'EdDSA' as const })) };
  }
  try {
    // Public keys only: no key-encryption key needed to check the heads against the ring in the database.
    const ring = await openKeyRing({ config: ctx.config, store: ctx.storage.signingKeys, publicOnly: true, noTimer: true });
    return ring.jwks();
  } catch (err) {
    if (!(err instanceof KeyRingError)) throw err;
    io.err(`note: signed heads cannot be checked: ${err.message}`);
    return { keys: [] };
  }
}
