import { commitRevocationsIn } from '../../broker/revoke.ts';
import { systemClock } from '../../lib/clock.ts';
import { formatDuration } from '../../lib/duration.ts';
import { DEFAULT_KEY_GRACE_SECONDS, KeyRingError } from '../../keys/key-ring.ts';
import { openKeyRing } from '../../keys/key-ring-db.ts';
import { openCliContext } from '../context.ts';
import type { CliIo } from '../../lib/cli-io.ts';
import { CLI_ACTOR } from '../operator.ts';
import { UsageError, parseCommandArgs } from '../../lib/cli-args.ts';
import { finishRevocations, openRevocationContext } from './revocation.ts';

const USAGE = 'jit keys list | jit keys rotate | jit keys revoke KID';

/** Approximate age for people: "3d 4h", "2h 5m", "7m", "12s". */
function age(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const [d, h, m] = [Math.floor(s / 86400), Math.floor((s % 86400) / 3600), Math.floor((s % 3600) / 60)];
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  return m > 0 ? `${m}m` : `${s}s`;
}

/**
 * `jit keys`: the Ed25519 signing keys (webhooks, gate credentials). Shows
 * key ids and ages, never private keys. `rotate` makes a new current key;
 * the old one stays in the JWKS for the grace period. A running service
 * uses the new key within about a second (it re-checks the key file, or with
 * JIT_DATABASE_URL the ring's version in the database, at most
 * once a second). `revoke KID` is for a compromised key: it leaves the JWKS
 * at once, so what it signed (gate credentials, webhooks) stops verifying;
 * when KID is the current key a new one is made current in the same write,
 * so the service never signs with it again and never stands without a key.
 * It also revokes every live gate credential KID signed (found by its issue
 * audit entry), through the broker's revoke verb as `local-cli`: audited,
 * "revoked" webhook queued, so `jit credentials` no longer lists what
 * /gate/verify already refuses. Run again, it ends any such credential a
 * failed earlier run left live.
 */
export async function keysCommand(args: string[], io: CliIo): Promise<number> {
  // A kid is base64url, so one in 64 begins with "-": right after `revoke` it is the KID, not an option.
  if (args[0] === 'revoke' && args[1]?.startsWith('-') && !['-h', '--help', '--'].includes(args[1])) args = ['revoke', '--', ...args.slice(1)];
  const { values, positionals } = parseCommandArgs(args, {}, USAGE);
  if (values.help) return (io.out(`usage: ${USAGE}`), 0);
  const [sub, ...rest] = positionals;
  const kid = sub === 'revoke' ? rest.shift() : undefined;
  if (sub === 'revoke' && !kid) throw new UsageError(`jit keys revoke needs the KID to revoke (see "jit keys list")\nusage: ${USAGE}`);
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"\nusage: ${USAGE}`);
  if (sub !== 'list' && sub !== 'rotate' && sub !== 'revoke') throw new UsageError(`${sub ? `unknown subcommand "${sub}"` : 'missing subcommand'}\nusage: ${USAGE}`);

  // Revoking writes "revoked" webhooks: the context the other revocation commands use.
  const ctx = sub === 'revoke' ? await openRevocationContext(io) : await openCliContext(io);
  try {
    if (sub === 'rotate' && ctx.config.signingKey) {
      // Checked before the key ring is opened, so a refused rotate changes nothing on disk.
      io.err('jit keys: the signing key comes from JIT_SIGNING_KEY; to rotate, set it to a new key and restart (the old key stays published for the grace period)');
      return 1;
    }
    const log = { warn: (_: object, msg: string) => io.err(`jit keys: ${msg}`), info: () => {} };
    // With JIT_DATABASE_URL the ring in the database (listing needs no key-encryption key; rotate and revoke do).
    const ring = await openKeyRing({ config: ctx.config, store: ctx.storage.signingKeys, clock: systemClock, log, readOnly: sub !== 'rotate', publicOnly: sub === 'list', noTimer: true });
    const now = systemClock.now();
    if (sub === 'list') {
      const keys = ring.list();
      if (keys.length === 0) {
        io.out(`No signing key yet; the service generates one on first start (in ${ring.location}).`);
        return 0;
      }
      io.out(['KID', 'STATUS', 'SOURCE', 'CREATED', 'AGE', 'LEAVES_JWKS'].join('\t'));
      for (const k of keys) {
        const leaves = k.revokedAt ? `revoked ${new Date(k.revokedAt).toISOString()}` : k.dropsAt ? new Date(k.dropsAt).toISOString() : '-';
        io.out([k.kid, k.status, k.source, new Date(k.createdAt).toISOString(), age(now - k.createdAt), leaves].join('\t'));
      }
      io.out(`keys kept in: ${ring.location}`);
      return 0;
    }
    if (sub === 'revoke') {
      let result;
      try {
        result = await ring.revoke(kid!);
      } catch (err) {
        if (!(err instanceof KeyRingError)) throw err;
        io.err(`jit keys: ${err.message}`);
        return 1;
      }
      const records = await ctx.storage.transaction(async (tx) => {
        if (!result.alreadyRevoked) await ctx.audit.append(tx, { event: 'key.revoked', actor: CLI_ACTOR, data: { kid, ...(result.rotated ? { new_kid: result.current } : {}) } }, now);
        // The request of every live gate credential kid signed; one that changed meanwhile (revoked or expired by someone else) is skipped.
        const requestIds = (await tx.credentials.liveGateSignedBy(kid!)).map((cred) => cred.request_id);
        return commitRevocationsIn(tx, ctx.deps, { requestIds }, CLI_ACTOR, `signing key ${kid} was revoked`);
      });
      if (result.alreadyRevoked) {
        if (records.length === 0) {
          io.out(`Key ${kid} was already revoked; nothing changed.`);
          return 0;
        }
        io.out(`Key ${kid} was already revoked; ending the gate credentials it signed that were still live.`);
      } else {
        if (result.rotated) io.out(`New signing key ${result.current} is current (${kid} was the current key).`);
        io.out(`Key ${kid} is revoked: it is out of the JWKS, and gate credentials and webhooks it signed no longer verify.`);
        io.out('A running service stops trusting it within about a second.');
      }
      await finishRevocations(ctx, records, io);
      io.out(`Ended ${records.length} live gate credential${records.length === 1 ? '' : 's'} signed with ${kid}.`);
      return 0;
    }
    let rotation;
    try {
      rotation = await ring.rotate();
    } catch (err) {
      if (!(err instanceof KeyRingError)) throw err;
      io.err(`jit keys: ${err.message}`);
      return 1;
    }
    const { kid: newKid, retiredKid } = rotation;
    await ctx.storage.transaction((tx) => ctx.audit.append(tx, { event: 'key.rotated', actor: CLI_ACTOR, data: { kid: newKid, retired_kid: retiredKid } }, now));
    io.out(`New signing key ${newKid} is current; ${retiredKid} stays in the JWKS for ${formatDuration(DEFAULT_KEY_GRACE_SECONDS)} so receivers can still verify what it signed.`);
    io.out('A running service (every broker on the database, with JIT_DATABASE_URL) uses the new key within about a second.');
    return 0;
  } finally {
    await ctx.close();
  }
}
