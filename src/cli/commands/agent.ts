import { removeAgentRevoking } from '../../broker/revoke.ts';
import { openCliContext } from '../context.ts';
import type { CliIo } from '../../lib/cli-io.ts';
import { CLI_ACTOR } from '../operator.ts';
import { UsageError, parseCommandArgs } from '../../lib/cli-args.ts';
import { finishRevocationsSummarized, openRevocationContext } from './revocation.ts';

const USAGE = 'jit agent add NAME [--session KEY] | jit agent list | jit agent remove NAME';

/**
 * `jit agent remove NAME`: the token stops working and, in the same
 * transaction, everything the agent held or may still get ends (live
 * credentials, approved and pending requests), each audited as local-cli
 * with its webhook; then the credentials are ended outside the database.
 */
async function removeAgent(name: string, io: CliIo): Promise<number> {
  const ctx = await openRevocationContext(io);
  try {
    const records = await removeAgentRevoking(ctx.deps, name, CLI_ACTOR);
    if (!records) {
      io.err(`jit agent: no agent named "${name}"`);
      return 1;
    }
    io.out(`Agent "${name}" removed; its token no longer works.`);
    if (records.length === 0) {
      io.out('It held no live credential and had no pending or approved request.');
      return 0;
    }
    return await finishRevocationsSummarized(ctx, records, io);
  } finally {
    await ctx.close();
  }
}

export async function agentCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { session: { type: 'string' } }, USAGE);
  if (values.help) return (io.out(`usage: ${USAGE}`), 0);
  const [sub, name, ...extra] = positionals;
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"\nusage: ${USAGE}`);
  if (sub === 'remove') {
    if (!name) throw new UsageError(`agent remove needs a NAME\nusage: ${USAGE}`);
    return removeAgent(name, io);
  }
  const ctx = await openCliContext(io);
  try {
    switch (sub) {
      case 'add': {
        if (!name) throw new UsageError(`agent add needs a NAME\nusage: ${USAGE}`);
        const { agent, token } = await ctx.agents.add(name, values.session as string | undefined);
        io.out(`Agent "${agent.name}" registered${agent.sessionKey ? ` (session ${agent.sessionKey})` : ''}.`);
        io.out('Its bearer token follows. It is shown only this once; store it in the agent\'s secret store.');
        io.out(token);
        return 0;
      }
      case 'list': {
        const agents = await ctx.agents.list();
        if (agents.length === 0) io.out('No agents. Register one with: jit agent add NAME');
        for (const a of agents) io.out(`${a.name}\t${a.sessionKey ?? '-'}\t${new Date(a.createdAt).toISOString()}`);
        return 0;
      }
      default:
        throw new UsageError(`${sub ? `unknown subcommand "${sub}"` : 'missing subcommand'}\nusage: ${USAGE}`);
    }
  } finally {
    await ctx.close();
  }
}
