import { openCliContext } from '../context.ts';
import type { CliIo } from '../io.ts';
import { UsageError, parseCommandArgs } from '../main.ts';

const USAGE = 'jit agent add NAME [--session KEY] | jit agent list | jit agent remove NAME';

export async function agentCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { session: { type: 'string' } }, USAGE);
  if (values.help) return (io.out(`usage: ${USAGE}`), 0);
  const [sub, name, ...extra] = positionals;
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"\nusage: ${USAGE}`);
  const ctx = openCliContext(io);
  try {
    switch (sub) {
      case 'add': {
        if (!name) throw new UsageError(`agent add needs a NAME\nusage: ${USAGE}`);
        const { agent, token } = ctx.agents.add(name, values.session as string | undefined);
        io.out(`Agent "${agent.name}" registered${agent.sessionKey ? ` (session ${agent.sessionKey})` : ''}.`);
        io.out('Its bearer token follows. It is shown only this once; store it in the agent\'s secret store.');
        io.out(token);
        return 0;
      }
      case 'list': {
        const agents = ctx.agents.list();
        if (agents.length === 0) io.out('No agents. Register one with: jit agent add NAME');
        for (const a of agents) io.out(`${a.name}\t${a.sessionKey ?? '-'}\t${new Date(a.createdAt).toISOString()}`);
        return 0;
      }
      case 'remove': {
        if (!name) throw new UsageError(`agent remove needs a NAME\nusage: ${USAGE}`);
        if (!ctx.agents.remove(name)) {
          io.err(`jit agent: no agent named "${name}"`);
          return 1;
        }
        io.out(`Agent "${name}" removed; its token no longer works.`);
        return 0;
      }
      default:
        throw new UsageError(`${sub ? `unknown subcommand "${sub}"` : 'missing subcommand'}\nusage: ${USAGE}`);
    }
  } finally {
    ctx.close();
  }
}
