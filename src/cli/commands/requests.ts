import type { RequestStatus } from '../../broker/repository.ts';
import { openCliContext } from '../context.ts';
import type { CliIo } from '../io.ts';
import { UsageError, parseCommandArgs } from '../main.ts';

const USAGE = 'jit requests [--status pending|approved|issued|denied|timed_out|expired|revoked|failed] [--limit N]';
const STATUSES: RequestStatus[] = ['pending', 'approved', 'issued', 'denied', 'timed_out', 'expired', 'revoked', 'failed'];

export async function requestsCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { status: { type: 'string' }, limit: { type: 'string' } }, USAGE);
  if (values.help) return (io.out(`usage: ${USAGE}`), 0);
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"\nusage: ${USAGE}`);
  const status = values.status as string | undefined;
  if (status !== undefined && !STATUSES.includes(status as RequestStatus)) {
    throw new UsageError(`--status must be one of ${STATUSES.join(', ')}`);
  }
  const limit = values.limit === undefined ? 50 : Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new UsageError('--limit must be a whole number from 1 to 10000');
  const ctx = openCliContext(io);
  try {
    const rows = ctx.repo.listRequests({ ...(status ? { status: status as RequestStatus } : {}), limit });
    if (rows.length === 0) {
      io.out(status ? `No ${status} requests.` : 'No requests.');
      return 0;
    }
    io.out(['ID', 'STATUS', 'AGENT', 'TIER', 'RESOURCE', 'CREATED', 'SCOPE'].join('\t'));
    for (const r of rows) {
      const scope = JSON.parse(r.scope) as { vault_paths?: { path: string; capabilities: string[] }[]; repo?: string; refs?: string[] };
      const what = scope.vault_paths
        ? scope.vault_paths.map((p) => `${p.path}[${p.capabilities.join(',')}]`).join(' ')
        : `${scope.repo} ${scope.refs?.join(' ')}`;
      io.out([r.id, r.status, r.agent_name, `${r.tier}->${r.required_tier}`, r.resource, new Date(r.created_at).toISOString(), what].join('\t'));
    }
    return 0;
  } finally {
    ctx.close();
  }
}
