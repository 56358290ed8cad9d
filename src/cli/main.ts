import { parseArgs } from 'node:util';
import { ConfigError } from '../config/config.ts';
import { BrokerError } from '../broker/errors.ts';
import { agentCommand } from './commands/agent.ts';
import { auditCommand } from './commands/audit.ts';
import { claimCommand, revokeCommand, statusCommand } from './commands/client-ops.ts';
import { credentialsCommand } from './commands/credentials.ts';
import { mcpCommand } from './commands/client-mcp.ts';
import { requestCommand } from './commands/client-request.ts';
import { decideCommand } from './commands/decide.ts';
import { devVaultCommand } from './commands/dev-vault.ts';
import { gateCommand } from './commands/gate.ts';
import { keysCommand } from './commands/keys.ts';
import { webhooksCommand } from './commands/webhooks.ts';
import { policyCommand } from './commands/policy.ts';
import { requestsCommand } from './commands/requests.ts';
import { serveCommand } from './commands/serve.ts';
import { COMMAND_HELP } from './help.ts';
import type { CliIo } from './io.ts';

const USAGE = `Usage: jit <command> [options]

Service
  serve                               run the broker (npm start); dev mode when VAULT_ADDR is unset
  dev-vault [--port 8200] [--root-token T]
                                      run the development Vault in the foreground (development only)

Agents
  agent add NAME [--session KEY]      register an agent; prints its token once (last line)
  agent list                          list agents
  agent remove NAME                   remove an agent; its token stops working, and its
                                      credentials and open requests are revoked

Requests and approvals
  requests [--status S] [--agent NAME] [--limit N] [--json]
                                      list requests (newest first)
  requests show ID [--json]           the whole request: asked, granted, votes, credential, webhooks
  requests revoke ID | --all [--agent NAME] [--reason TEXT]
                                      end a credential or request now; --all is the kill switch
  credentials [--agent NAME] [--json] live credentials (accessor or jti, scope, expiry; never a secret)
  approve ID [--reason TEXT] [--ttl D] [--drop-capability CAP]... [--drop-path P]... [--drop-ref R]...
                                      approve a pending request as approver "local-cli",
                                      optionally granting less than asked
  deny ID [--reason TEXT]             deny a pending request as approver "local-cli"

Audit
  audit verify                        check the audit hash chain (exit 1 if tampered)
  audit export [--output F] [--since N]  write the audit log as JSON Lines

Policy and gate
  policy check [DIR]                  validate policy files (default $JIT_POLICIES)
  gate verify --credential C --repo R --ref REF
                                      check a gate push credential (for a pre-receive hook)

Webhooks and signing keys
  webhooks list [--dead] [--limit N]  the decision webhook outbox (dead letters with --dead)
  webhooks retry ID | --all-dead      re-queue dead events after fixing the cause
  keys list | rotate | revoke KID     the Ed25519 signing keys; rotate keeps the old one published 7 days,
                                      revoke drops a compromised one from the JWKS at once

Agent side (HTTP only; JIT_URL default http://127.0.0.1:8787, JIT_AGENT_TOKEN)
  request vault --path PATH:CAPS... --tier N --reason TEXT [--ttl D] [--session KEY] [--wait [--claim]]
  request gate --repo R --ref REF... --tier N --reason TEXT [...]
                                      ask for a credential; "jit request --help" for all options
  status ID                           the agent's own request (never the secret)
  claim ID [--format env|json]        claim an approved credential once (stdout only)
  revoke ID                           end the credential now
  mcp                                 MCP server on stdio with the same operations as tools

Operator commands read the service's environment (JIT_DB, JIT_POLICIES, ...).
Exit codes: 0 done, 1 failed, 2 wrong use or bad configuration (agent side: 3 broker unreachable).
Run "jit <command> --help" (or "jit help <command>") for a command's options; docs/cli.md has them all.`;

export type Command = (args: string[], io: CliIo) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  serve: serveCommand,
  'dev-vault': devVaultCommand,
  agent: agentCommand,
  requests: requestsCommand,
  credentials: credentialsCommand,
  approve: decideCommand('approve'),
  deny: decideCommand('deny'),
  audit: auditCommand,
  policy: policyCommand,
  gate: gateCommand,
  webhooks: webhooksCommand,
  keys: keysCommand,
  request: requestCommand,
  status: statusCommand,
  claim: claimCommand,
  revoke: revokeCommand,
  mcp: mcpCommand,
};

/** Every command name, for help and tests. */
export const COMMAND_NAMES = Object.keys(COMMANDS);

const defaultIo: CliIo = {
  env: process.env,
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

/** Runs one CLI invocation and returns its exit code. */
export async function runCli(argv: string[], io: CliIo = defaultIo): Promise<number> {
  const [first, ...afterFirst] = argv;
  if (first === '--help' || first === '-h' || (first === 'help' && afterFirst.length === 0)) {
    io.out(USAGE);
    return 0;
  }
  if (!first) {
    io.err(`jit: which command?\n\n${USAGE}`);
    return 2;
  }
  // `jit help X` is `jit X --help`.
  const [name, ...rest] = first === 'help' ? [afterFirst[0]!, '--help'] : [first, ...afterFirst];
  const command = COMMANDS[name];
  if (!command) {
    const guess = closestCommand(name);
    io.err(`jit: unknown command "${name}"${guess ? `; did you mean "jit ${guess}"?` : ''}\nCommands: ${Object.keys(COMMANDS).join(', ')}. Run "jit --help" for usage.`);
    return 2;
  }
  if (wantsHelp(rest) && COMMAND_HELP[name]) {
    io.out(COMMAND_HELP[name]);
    return 0;
  }
  try {
    return await command(rest, io);
  } catch (err) {
    if (err instanceof ConfigError) {
      io.err(`jit: configuration error: ${err.message}`);
      return 2;
    }
    if (err instanceof UsageError) {
      io.err(`jit ${name}: ${err.message}`);
      io.err(`Run "jit ${name} --help" for usage.`);
      return 2;
    }
    if (err instanceof BrokerError) {
      io.err(`jit ${name}: ${err.message}`);
      return 1;
    }
    io.err(`jit ${name}: ${(err as Error).message}`);
    return 1;
  }
}

export class UsageError extends Error {}

/** `--help` or `-h` among the arguments (before a `--`). */
function wantsHelp(args: string[]): boolean {
  for (const a of args) {
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
  }
  return false;
}

/** The command a typo most likely meant (edit distance at most 2), if any. */
function closestCommand(name: string): string | undefined {
  let best: { name: string; d: number } | undefined;
  for (const c of Object.keys(COMMANDS)) {
    const d = editDistance(name.toLowerCase(), c);
    if (d <= 2 && (!best || d < best.d)) best = { name: c, d };
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

/** parseArgs with usage errors turned into UsageError. */
export function parseCommandArgs(
  args: string[],
  options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>,
  usage: string,
): { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] } {
  try {
    return parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true }) as {
      values: Record<string, string | boolean | string[] | undefined>;
      positionals: string[];
    };
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\nusage: ${usage}`);
  }
}
