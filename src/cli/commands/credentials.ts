import { grantJson, grantToMint } from '../../broker/narrowing.ts';
import { credentialState } from '../../broker/view.ts';
import { inertText } from '../../lib/inert-text.ts';
import { openCliContext } from '../context.ts';
import type { CliIo } from '../../lib/cli-io.ts';
import { UsageError, parseCommandArgs } from '../../lib/cli-args.ts';
import { agentOption, scopeWords } from './requests.ts';

const USAGE = 'jit credentials [--agent NAME] [--json]';

/**
 * `jit credentials`: the credentials that still work (and those being
 * revoked, whose Vault clean-up the service has yet to finish): request,
 * agent, type, accessor or jti, expiry and the granted scope. Only
 * identifiers: the broker never has a secret to show.
 */
export async function credentialsCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { agent: { type: 'string' }, json: { type: 'boolean' } }, USAGE);
  if (values.help) return (io.out(`usage: ${USAGE}`), 0);
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${inertText(positionals[0]!)}"\nusage: ${USAGE}`);
  const agent = agentOption(values.agent as string | undefined);
  const ctx = await openCliContext(io);
  try {
    const rows = (await ctx.storage.credentials.inUse(agent ? { agentName: agent } : {})).map(({ credential, request }) => ({ c: credential, r: request }));
    if (values.json) {
      for (const { c, r } of rows) {
        io.out(
          JSON.stringify({
            request_id: c.request_id,
            agent: r.agent_name,
            type: c.type,
            state: credentialState(c),
            ...(c.accessor ? { accessor: c.accessor } : {}),
            ...(c.jti ? { jti: c.jti } : {}),
            expires_at: new Date(c.expires_at).toISOString(),
            scope: grantJson(grantToMint(r)),
          }),
        );
      }
      return 0;
    }
    if (rows.length === 0) {
      io.out(`No live credentials${agent ? ` of agent ${agent}` : ''}.`);
      return 0;
    }
    io.out(['REQUEST', 'AGENT', 'TYPE', 'STATE', 'ACCESSOR/JTI', 'EXPIRES', 'SCOPE'].join('\t'));
    for (const { c, r } of rows) {
      io.out([c.request_id, r.agent_name, c.type, credentialState(c), c.accessor ?? c.jti ?? '-', new Date(c.expires_at).toISOString(), scopeWords(grantToMint(r))].join('\t'));
    }
    return 0;
  } finally {
    await ctx.close();
  }
}
