import { SWEEP_INTERVAL_MS } from '../../broker/lifecycle.ts';
import { finishRevocation, type RevocationRecord } from '../../broker/revoke.ts';
import { vaultClientFromConfig } from '../../vault/from-config.ts';
import type { VaultClient } from '../../vault/types.ts';
import { UnaddressableWebhooks, openCliContext, type CliContext } from '../context.ts';
import type { CliIo } from '../io.ts';

/** The operator's identity for revocations from the shell, the same as for decisions (SPEC §3, §11). */
export const CLI_ACTOR = 'local-cli';

const SWEEP_SECONDS = Math.ceil(SWEEP_INTERVAL_MS / 1000);

/**
 * The context for revoking: like `jit approve`'s, the revoked events go to
 * the webhook outbox in the revoking transaction. Unlike an approval, a
 * revocation is not refused when the policy files are broken (their agents'
 * entries address the webhooks): stopping access must not wait for a policy
 * fix. It then goes ahead without webhooks and says so on stderr.
 */
export function openRevocationContext(io: CliIo): CliContext {
  try {
    return openCliContext(io, { decisions: true });
  } catch (err) {
    if (!(err instanceof UnaddressableWebhooks)) throw err;
    io.err(`jit: warning: the policy files in ${err.policiesDir} are invalid, so the agents' "revoked" webhooks cannot be addressed; revoking anyway, without webhooks (the audit log records every revocation). Problems:\n  ${err.problems.join('\n  ')}`);
    return openCliContext(io);
  }
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
 * - in dev mode the development Vault lives inside `jit serve` and no other
 *   process can reach it: the row stays `ending` and the service's sweep
 *   revokes the token within one sweep interval;
 * - if Vault fails, the same: the sweep retries until it succeeds.
 */
export async function finishRevocations(ctx: CliContext, records: RevocationRecord[], io: CliIo): Promise<RevocationSummary> {
  const summary: RevocationSummary = { credentials: 0, pending: 0, approved: 0, vaultFailed: 0 };
  const needsVault = records.some((r) => r.credential?.type === 'vault_token');
  const vault = needsVault ? await connectVault(ctx, io) : undefined;
  try {
    for (const r of records) {
      const head = `Revoked ${r.requestId} (was ${r.was}, agent ${r.agent})`;
      if (r.was === 'pending' || r.was === 'approved') {
        summary[r.was]++;
        io.out(`${head}: it can no longer be ${r.was === 'pending' ? 'approved' : 'claimed'}.`);
        continue;
      }
      summary.credentials++;
      const cred = r.credential;
      if (!cred) {
        io.out(`${head}: it held no live credential.`);
        continue;
      }
      if (cred.type === 'gate_push') {
        await finishRevocation(ctx.deps, cred);
        io.out(`${head}: gate credential ${cred.jti} revoked; /gate/verify refuses it from now on.`);
        continue;
      }
      if (!vault) {
        io.out(`${head}: revocation recorded; the service will revoke the token in Vault at its next sweep, within about ${SWEEP_SECONDS} s (${deferredWhy(ctx)}).`);
        continue;
      }
      try {
        await finishRevocation({ ...ctx.deps, vault: vault.client }, cred);
        io.out(`${head}: token revoked in Vault and its policy deleted.`);
      } catch (err) {
        summary.vaultFailed++;
        io.out(`${head}: revocation recorded, but Vault failed (${(err as Error).message}); the service retries every ${SWEEP_SECONDS} s until the token is revoked.`);
      }
    }
  } finally {
    vault?.client.stop();
  }
  return summary;
}

function deferredWhy(ctx: CliContext): string {
  return ctx.config.vault
    ? 'this command could not log in to Vault'
    : 'dev mode: the development Vault runs inside jit serve, out of reach of this command; if jit serve is not running, that Vault and every token in it are gone';
}

/** A logged-in Vault client when the environment names a Vault (never in dev mode), else undefined. */
async function connectVault(ctx: CliContext, io: CliIo): Promise<{ client: VaultClient } | undefined> {
  if (!ctx.config.vault) return undefined;
  const client = vaultClientFromConfig(ctx.config.vault);
  try {
    await client.start();
    return { client };
  } catch (err) {
    client.stop();
    io.err(`jit: could not log in to Vault at ${ctx.config.vault.addr}: ${(err as Error).message}`);
    return undefined;
  }
}

/** `Ended 1 live credential, 1 pending and 1 approved request.` */
export function describeSummary(s: RevocationSummary): string {
  const n = (k: number, one: string, many: string) => `${k} ${k === 1 ? one : many}`;
  return `Ended ${n(s.credentials, 'live credential', 'live credentials')}, ${s.pending} pending and ${n(s.approved, 'approved request', 'approved requests')}.`;
}
