import { systemClock } from '../../lib/clock.ts';
import { requeueDeadDelivery, targetUrlLabel } from '../../broker/webhook-retry.ts';
import type { OutboxRow } from '../../webhooks/outbox.ts';
import { openCliContext } from '../context.ts';
import { iso } from '../format.ts';
import type { CliIo } from '../../lib/cli-io.ts';
import { CLI_ACTOR } from '../operator.ts';
import { UsageError, parseCommandArgs } from '../../lib/cli-args.ts';

const USAGE = 'jit webhooks list [--dead] [--limit N] | jit webhooks retry ID | jit webhooks retry --all-dead';

/** --all-dead lists each event up to this many; beyond, it prints progress and a summary. */
const RETRY_LIST_MAX = 20;
const RETRY_PROGRESS_EVERY = 1000;


function when(r: OutboxRow): string {
  if (r.state === 'delivered') return `delivered ${iso(r.delivered_at)}`;
  if (r.state === 'pending') return `next ${iso(r.next_attempt_at)}`;
  if (r.state === 'delivering') return `sending (lease until ${iso(r.lease_expires_at)})`;
  return `dead since ${iso(r.updated_at)}`;
}

/** `jit webhooks`: the decision webhook outbox, its dead letters, and re-queueing them. */
export async function webhooksCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    args,
    { dead: { type: 'boolean' }, limit: { type: 'string' }, 'all-dead': { type: 'boolean' } },
    USAGE,
  );
  if (values.help) return (io.out(`usage: ${USAGE}`), 0);
  const [sub, id, ...extra] = positionals;
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"\nusage: ${USAGE}`);
  const limit = values.limit === undefined ? 50 : Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new UsageError('--limit must be a whole number from 1 to 10000');
  if (sub !== 'list' && sub !== 'retry') {
    throw new UsageError(`${sub ? `unknown subcommand "${sub}"` : 'missing subcommand'}\nusage: ${USAGE}`);
  }
  if (sub === 'retry' && !id === !values['all-dead']) throw new UsageError(`webhooks retry needs an event ID or --all-dead\nusage: ${USAGE}`);
  if (sub === 'list' && (id !== undefined || values['all-dead'])) throw new UsageError(`webhooks list takes only --dead and --limit\nusage: ${USAGE}`);
  if (sub === 'retry' && (values.dead || values.limit !== undefined)) throw new UsageError(`--dead and --limit go with "webhooks list"\nusage: ${USAGE}`);

  const ctx = await openCliContext(io);
  try {
    const store = ctx.storage.outbox;
    if (sub === 'list') {
      const rows = await store.list({ ...(values.dead ? { state: 'dead' as const } : {}), limit });
      if (rows.length === 0) {
        io.out(values.dead ? 'No dead webhook events.' : 'No webhook events.');
        return 0;
      }
      io.out(['ID', 'STATE', 'TYPE', 'REQUEST', 'TARGET', 'ATTEMPTS', 'LAST_STATUS', 'WHEN', 'URL', 'LAST_ERROR'].join('\t'));
      for (const r of rows) {
        io.out(
          [r.id, r.state, r.type, r.request_id, r.target, r.attempts, r.last_status ?? '-', when(r), targetUrlLabel(r), r.last_error ?? '-'].join('\t'),
        );
      }
      return 0;
    }

    // The service's dispatcher resolves OPENCLAW_HOOKS_URL when it sends, so what matters is the
    // service's setting (recorded at its start), not this shell's.
    const serviceHasOpenClaw = (await ctx.recordedSettings())?.settings.openclaw_configured;
    /** Re-queues one dead event; the reason on failure. */
    const requeue = async (row: OutboxRow): Promise<{ ok: true; line: string } | { ok: false; why: string }> => {
      const r = await requeueDeadDelivery({ storage: ctx.storage, audit: ctx.audit, clock: systemClock }, row.id, CLI_ACTOR, serviceHasOpenClaw);
      return r.ok ? { ok: true, line: `Re-queued ${row.id} (${row.type}, request ${row.request_id}) to ${r.to}` } : r;
    };

    if (!values['all-dead']) {
      const row = await store.get(id!);
      if (!row) {
        io.err(`jit webhooks: no webhook event ${id}`);
        return 1;
      }
      const r = await requeue(row);
      if (!r.ok) {
        io.err(`jit webhooks: ${r.why}`);
        return 1;
      }
      io.out(`${r.line}; the running service sends it within a second or so.`);
      return 0;
    }

    // --all-dead: a snapshot of every dead event (events that die again while
    // this runs are not picked up twice), with progress for big batches.
    const total = (await store.countByState()).dead;
    const rows = total > 0 ? await store.list({ state: 'dead', limit: total }) : [];
    if (rows.length === 0) {
      io.out('No dead webhook events.');
      return 0;
    }
    const verbose = rows.length <= RETRY_LIST_MAX;
    if (!verbose) io.err(`Re-queueing ${rows.length} dead webhook events…`);
    let done = 0;
    let failures = 0;
    for (const [i, row] of rows.entries()) {
      const r = await requeue(row);
      if (r.ok) {
        done++;
        if (verbose) io.out(r.line);
      } else {
        failures++;
        io.err(`jit webhooks: ${r.why}`);
      }
      if (!verbose && (i + 1) % RETRY_PROGRESS_EVERY === 0) io.err(`… ${i + 1} of ${rows.length}`);
    }
    io.out(`Re-queued ${done} of ${rows.length} dead webhook events${failures > 0 ? ` (${failures} not re-queued, see above)` : ''}; the running service sends them at its usual pace.`);
    return failures > 0 ? 1 : 0;
  } finally {
    await ctx.close();
  }
}
