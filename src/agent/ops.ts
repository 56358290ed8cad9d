import type { CliIo } from '../lib/cli-io.ts';
import { parseCommandArgs } from '../lib/cli-args.ts';
import { describeRequest } from '../client/describe.ts';
import { EXIT, formatArg, printIssued, requestIdArg, withClient } from './common.ts';
import { waitFor, waitTimeout } from './request.ts';

const STATUS_USAGE = 'jit status ID [--wait [--wait-timeout DURATION]] [--format text|json]';
const CLAIM_USAGE = 'jit claim ID [--format env|json]';
const REVOKE_USAGE = 'jit revoke ID [--format text|json]';

/**
 * `jit status ID`: the agent's own request as the broker sees it (never the
 * secret). With --wait: once decided, following the decision stream.
 */
export async function statusCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { format: { type: 'string' }, wait: { type: 'boolean' }, 'wait-timeout': { type: 'string' } }, STATUS_USAGE);
  if (values.help) return (io.out(`usage: ${STATUS_USAGE}`), EXIT.ok);
  const id = requestIdArg(positionals, STATUS_USAGE);
  const format = formatArg(values.format, ['text', 'json'] as const, 'text');
  const wait = values.wait === true;
  const timeoutMs = waitTimeout(values['wait-timeout'], wait);
  return withClient('status', io, async (client) => {
    const view = wait ? await waitFor(client, io, 'status', id, timeoutMs) : await client.status(id);
    if (format === 'json') io.out(JSON.stringify(view, null, 2));
    else for (const line of describeRequest(view)) io.out(line);
    return !wait || view.status === 'approved' || view.status === 'issued' ? EXIT.ok : EXIT.apiError;
  });
}

/**
 * `jit claim ID`: mints the approved credential, once, and prints it on
 * stdout only (`export VAULT_TOKEN=…` lines for `eval`, or JSON).
 */
export async function claimCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { format: { type: 'string' } }, CLAIM_USAGE);
  if (values.help) return (io.out(`usage: ${CLAIM_USAGE}`), EXIT.ok);
  const id = requestIdArg(positionals, CLAIM_USAGE);
  const format = formatArg(values.format, ['env', 'json'] as const, 'env');
  return withClient('claim', io, async (client) => {
    const issued = await client.claim(id);
    io.err(`Claimed ${issued.id}: ${issued.credential.type} valid until ${issued.expires_at}. The secret is shown only this once.`);
    printIssued(io, issued, format);
    return EXIT.ok;
  });
}

/** `jit revoke ID`: ends the credential now (or cancels a request still pending or approved). */
export async function revokeCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { format: { type: 'string' } }, REVOKE_USAGE);
  if (values.help) return (io.out(`usage: ${REVOKE_USAGE}`), EXIT.ok);
  const id = requestIdArg(positionals, REVOKE_USAGE);
  const format = formatArg(values.format, ['text', 'json'] as const, 'text');
  return withClient('revoke', io, async (client) => {
    const view = await client.revoke(id);
    if (format === 'json') io.out(JSON.stringify(view, null, 2));
    else io.out(`Request ${view.id} is ${view.status}${view.credential ? `; credential ${view.credential.state}` : ''}.`);
    return EXIT.ok;
  });
}
