import type { Harness } from '../../helpers/broker-harness.ts';

/** The `export NAME=value` lines the agent CLI prints, as a record (single quotes undone). */
export function parseExports(stdout: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const m = /^export ([A-Z_]+)=(.*)$/.exec(line);
    if (!m) continue;
    const raw = m[2]!;
    vars[m[1]!] = raw.startsWith("'") ? raw.slice(1, -1).replaceAll(`'\\''`, "'") : raw;
  }
  return vars;
}

/** Waits until a pending request with this reason exists (created by a child process) and returns its id. */
export async function pendingWithReason(h: Harness, reason: string, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const row = h.broker.deps.repo.listRequests({ status: 'pending', limit: 50 }).find((r) => r.reason === reason);
    if (row) return row.id;
    if (Date.now() > deadline) throw new Error(`no pending request with reason "${reason}"`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Resolves when a Vault token no longer works (the dev Vault answers 403 for a revoked token). */
export async function tokenIsDead(h: Harness, token: string, path: string): Promise<boolean> {
  try {
    await h.vaultAs(token).read(path);
    return false;
  } catch (err) {
    return (err as { response?: { statusCode?: number } }).response?.statusCode === 403;
  }
}
