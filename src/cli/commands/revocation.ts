import { SWEEP_INTERVAL_MS } from '../../broker/lifecycle.ts';
import type { CredentialRow } from '../../broker/rows.ts';
import { endCredential } from '../../broker/credential-end.ts';
import type { RevocationRecord } from '../../broker/revoke.ts';
import { vaultClientFromConfig } from '../../vault/from-config.ts';
import type { VaultClient } from '../../vault/types.ts';
import { openCliContext, type CliContext } from '../context.ts';
import type { CliIo } from '../../lib/cli-io.ts';

const SWEEP_SECONDS = Math.ceil(SWEEP_INTERVAL_MS / 1000);

/**
 * The context for revoking: like `jit approve`'s, the revoked events go to
 * the webhook outbox in the revoking transaction. Unlike an approval, a
 * revocation is not refused when the policy files are broken (their agents'
 * entries address the webhooks): stopping access must not wait for a policy
 * fix. The events are then written without a target, which the running
 * service's dispatcher looks up in the policy it has loaded; stderr says so.
 */
export function openRevocationContext(io: CliIo): Promise<CliContext> {
  return openCliContext(io, {
    decisions: true,
    invalidPolicies: (err) =>
      io.err(
        `jit: warning: the policy files in ${err.policiesDir} are invalid; revoking anyway. The "revoked" webhooks are written without a target: ` +
          `the running jit serve sends each to the agent's webhook in the policy it has loaded. Problems:\n  ${err.problems.join('\n  ')}`,
      ),
  });
}

export interface RevocationSummary {
  credentials: number;
  pending: number;
  approved: number;
  /** Vault tokens whose revocation in Vault failed here (the service retries). */
  vaultFailed: number;
}

/**
 * Finishes committed revocations from the CLI process and prints one line
 * per request saying exactly what happened to its credential:
 *
 * - a gate credential is revoked by the commit itself (/gate/verify checks
 *   the row); its row is marked ended here;
 * - a Vault token is revoked and its policy deleted here when this process
 *   can reach Vault (VAULT_ADDR and the broker's Vault login in its
 *   environment, as the service has);
 * - otherwise the row stays `ending` and the service's sweep revokes the
 *   token. Which Vault holds it is the service's setting (recorded at its
 *   start), not this shell's: in dev mode the development Vault lives
 *   inside `jit serve`, out of any other process's reach; a real Vault's
 *   token stays valid until the sweep runs (never, while the service is
 *   down), and the line says so;
 * - if Vault fails or refuses this command's login, the same, and it counts
 *   as a Vault failure (the command exits 1).
 *
 * A request already revoked whose credential is still `ending` (an earlier
 * Vault failure) comes here too: its revocation in Vault is tried again.
 */
export async function finishRevocations(ctx: CliContext, records: RevocationRecord[], io: CliIo): Promise<RevocationSummary> {
  const summary: RevocationSummary = { credentials: 0, pending: 0, approved: 0, vaultFailed: 0 };
  const needsVault = records.some((r) => r.credential?.type === 'vault_token');
  const vault = needsVault ? await connectVault(ctx, io) : undefined;
  try {
    for (const r of records) {
      const head = r.was === 'revoked' ? `Request ${r.requestId} (agent ${r.agent}) was already revoked` : `Revoked ${r.requestId} (was ${r.was}, agent ${r.agent})`;
      if (r.was === 'pending' || r.was === 'approved') {
        summary[r.was]++;
        io.out(`${head}: it can no longer be ${r.was === 'pending' ? 'approved' : 'claimed'}.`);
        continue;
      }
      if (r.was !== 'revoked') summary.credentials++;
      const cred = r.credential;
      if (!cred) {
        io.out(`${head}: it held no live credential.`);
        continue;
      }
      if (cred.type === 'gate_push') {
        await endCredential(ctx.deps, cred);
        io.out(`${head}: gate credential ${cred.jti} revoked; /gate/verify refuses it from now on.`);
        continue;
      }
      if ((await ctx.settings()).dev_vault) {
        io.out(`${head}: revocation recorded; the service will revoke the token in Vault at its next sweep, within about ${SWEEP_SECONDS} s (dev mode: the development Vault runs inside jit serve, out of reach of this command; if jit serve is not running, that Vault and every token in it are gone).`);
        continue;
      }
      if (!vault || 'refused' in vault) {
        if (vault) summary.vaultFailed++;
        io.out(`${head}: revocation recorded, but ${vault ? 'this command could not log in to Vault' : 'this command has no Vault login (VAULT_ADDR is unset in this shell)'}; ${await stillLive(ctx, cred)}`);
        continue;
      }
      try {
        await endCredential({ ...ctx.deps, vault: vault.client }, cred);
        io.out(`${head}: token revoked in Vault and its policy deleted.`);
      } catch (err) {
        summary.vaultFailed++;
        io.out(`${head}: revocation recorded, but Vault failed (${(err as Error).message}); ${await stillLive(ctx, cred)}`);
      }
    }
  } finally {
    if (vault && 'client' in vault) vault.client.stop();
  }
  return summary;
}

/**
 * What becomes of a token in the service's real Vault that this command
 * could not revoke: it stays valid until the service's sweep revokes it
 * (retrying until Vault accepts), which only happens while `jit serve` runs.
 */
async function stillLive(ctx: CliContext, cred: CredentialRow): Promise<string> {
  const { vault_addr } = await ctx.settings();
  const where = vault_addr ? ` (${vault_addr})` : '';
  return `the token is still valid in Vault${where}: the service revokes it at its next sweep, within about ${SWEEP_SECONDS} s while jit serve is running, retrying until Vault accepts; if jit serve is not running, the token stays live until it starts again or the token expires at ${new Date(cred.expires_at).toISOString()}.`;
}

/**
 * A logged-in Vault client when this shell names a Vault (VAULT_ADDR and a
 * login) and the service uses a real one, `refused` when that login fails,
 * else undefined.
 */
async function connectVault(ctx: CliContext, io: CliIo): Promise<{ client: VaultClient } | { refused: true } | undefined> {
  // A service in dev mode has its tokens in its own in-process Vault: no other Vault can revoke them.
  if (!ctx.config.vault || (await ctx.settings()).dev_vault) return undefined;
  const client = vaultClientFromConfig(ctx.config.vault);
  try {
    await client.start();
    return { client };
  } catch (err) {
    client.stop();
    io.err(`jit: could not log in to Vault at ${ctx.config.vault.addr}: ${(err as Error).message}`);
    return { refused: true };
  }
}

/**
 * {@link finishRevocations}, then its summary line ({@link describeSummary});
 * returns the command's exit code: 1 when Vault failed for a token, else 0.
 */
export async function finishRevocationsSummarized(ctx: CliContext, records: RevocationRecord[], io: CliIo): Promise<number> {
  const summary = await finishRevocations(ctx, records, io);
  io.out(describeSummary(summary));
  return summary.vaultFailed > 0 ? 1 : 0;
}

/** `Ended 1 live credential, 1 pending and 1 approved request.` */
export function describeSummary(s: RevocationSummary): string {
  const n = (k: number, one: string, many: string) => `${k} ${k === 1 ? one : many}`;
  return `Ended ${n(s.credentials, 'live credential', 'live credentials')}, ${s.pending} pending and ${n(s.approved, 'approved request', 'approved requests')}.`;
}
