import { AGENT_COMMANDS, AGENT_USAGE } from '../agent/commands.ts';
import { packageVersion } from '../lib/package-version.ts';
import { UsageError } from '../lib/cli-args.ts';
import { COMMAND_HELP } from './help.ts';
import { EXIT_OUTPUT_CLOSED, OutputClosed, getProcessIo, type CliIo } from '../lib/cli-io.ts';

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

Approvers
  approver add NAME [--telegram-id ID]
                                      register a person who may approve; prints their one-time
                                      enrolment link (last line; 15 minutes, single use)
  approver list                       list approvers: name, Telegram id, passkeys, sessions, created
  approver remove NAME                remove an approver; their sessions and Telegram rights end

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

Database
  db copy --to postgres://…           copy this SQLite database (JIT_DB) into an empty PostgreSQL
                                      database, then verify row counts and the audit chain there

Webhooks and signing keys
  webhooks list [--dead] [--limit N]  the decision webhook outbox (dead letters with --dead)
  webhooks retry ID | --all-dead      re-queue dead events after fixing the cause
  keys list | rotate | revoke KID     the Ed25519 signing keys; rotate keeps the old one published 7 days,
                                      revoke drops a compromised one from the JWKS at once

Agent side (HTTP only; JIT_URL default http://127.0.0.1:8787, JIT_AGENT_TOKEN)
${AGENT_USAGE}

Operator commands read the service's environment (JIT_DB, JIT_POLICIES, ...).
Exit codes: 0 done, 1 failed, 2 wrong use or bad configuration (agent side: 3 broker unreachable).
Run "jit <command> --help" (or "jit help <command>") for a command's options; docs/cli.md has them all.
"jit --version" (or -V) prints the version.`;

export type Command = (args: string[], io: CliIo) => Promise<number>;

/**
 * Every command, loaded when it runs: `jit --help` or `jit gate verify` (a
 * git pre-receive hook, once per pushed ref) must not pay for loading the
 * HTTP server, Telegram, Vault and metrics modules the other commands use.
 * Keep it that way: no static import of a command here.
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  serve: async () => (await import('./commands/serve.ts')).serveCommand,
  'dev-vault': async () => (await import('./commands/dev-vault.ts')).devVaultCommand,
  agent: async () => (await import('./commands/agent.ts')).agentCommand,
  approver: async () => (await import('./commands/approver.ts')).approverCommand,
  requests: async () => (await import('./commands/requests.ts')).requestsCommand,
  credentials: async () => (await import('./commands/credentials.ts')).credentialsCommand,
  approve: async () => (await import('./commands/decide.ts')).decideCommand('approve'),
  deny: async () => (await import('./commands/decide.ts')).decideCommand('deny'),
  audit: async () => (await import('./commands/audit.ts')).auditCommand,
  policy: async () => (await import('./commands/policy.ts')).policyCommand,
  gate: async () => (await import('./commands/gate.ts')).gateCommand,
  webhooks: async () => (await import('./commands/webhooks.ts')).webhooksCommand,
  keys: async () => (await import('./commands/keys.ts')).keysCommand,
  db: async () => (await import('./commands/db.ts')).dbCommand,
  // The agent side lives in src/agent/, shared with the agent package's `jit-agent`.
  ...AGENT_COMMANDS,
};

/** Every command name, for help and tests. */
export const COMMAND_NAMES = Object.keys(COMMANDS);

/** Options of jit itself (before a command), offered as suggestions too. */
const GLOBAL_OPTIONS = ['--help', '--version'];

/** Runs one CLI invocation and returns its exit code. */
export async function runCli(argv: string[], io: CliIo = getProcessIo()): Promise<number> {
  const [first, ...afterFirst] = argv;
  if (first === '--help' || first === '-h' || (first === 'help' && (afterFirst.length === 0 || afterFirst[0]!.startsWith('-')))) {
    io.out(USAGE);
    return 0;
  }
  if (first === '--version' || first === '-V') {
    io.out(packageVersion());
    return 0;
  }
  if (!first) {
    io.err('jit: missing command (usage: jit <command> [options]; "jit --help" lists the commands)');
    return 2;
  }
  // `jit help X` is `jit X --help`.
  const [name, ...rest] = first === 'help' ? [afterFirst[0]!, '--help'] : [first, ...afterFirst];
  const load = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!load) {
    const guess = closestName(name, name.startsWith('-') ? GLOBAL_OPTIONS : COMMAND_NAMES);
    io.err(`jit: unknown ${name.startsWith('-') ? 'option' : 'command'} "${name}"; ${guess ? `did you mean "${guess}"?` : '"jit --help" lists the commands'}`);
    return 2;
  }
  if (wantsHelp(rest) && COMMAND_HELP[name]) {
    io.out(COMMAND_HELP[name]);
    return 0;
  }
  try {
    return await (await load())(rest, io);
  } catch (err) {
    if (err instanceof OutputClosed) return EXIT_OUTPUT_CLOSED;
    if (err instanceof UsageError) {
      io.err(usageErrorLine(name, err));
      return 2;
    }
    // Loaded here, not at start: only a command that loaded the configuration can have thrown its error.
    const { ConfigError } = await import('../config/config.ts');
    if (err instanceof ConfigError) {
      io.err(`jit: configuration error: ${err.message}`);
      return 2;
    }
    const { StorageBusyError, StorageOpenError, StorageUnavailableError } = await import('../storage/errors.ts');
    if (err instanceof StorageOpenError) {
      // The configured database cannot be opened (JIT_DATABASE_URL): one line naming it, no password.
      io.err(`jit ${name}: ${err.message}`);
      return 2;
    }
    if (err instanceof StorageUnavailableError) {
      io.err(`jit ${name}: ${err.message}; try again`);
      return 1;
    }
    if (err instanceof StorageBusyError) {
      // Another process (the service) held the database's write lock past the wait: nothing was changed.
      io.err(`jit ${name}: ${err.message}; nothing was changed, try again`);
      return 1;
    }
    io.err(`jit ${name}: ${(err as Error).message}`);
    return 1;
  }
}

/**
 * Wrong use in one line: the problem and where the usage is. Commands put
 * "usage: …" lines under the problem; those stay out unless there is no
 * other text (then the usage line is the message).
 */
function usageErrorLine(name: string, err: UsageError): string {
  const lines = err.message.split('\n').map((l) => l.trim()).filter(Boolean);
  // A usage block may run over several lines (a command with subcommands): everything from "usage:" on is usage.
  const usageAt = lines.findIndex((l) => /^usage:/i.test(l));
  const problems = usageAt === -1 ? lines : lines.slice(0, usageAt);
  return `jit ${name}: ${(problems.length > 0 ? problems : lines.slice(0, 1)).join('; ')} (see "jit ${name} --help")`;
}

/** `--help` or `-h` among the arguments (before a `--`). */
function wantsHelp(args: string[]): boolean {
  for (const a of args) {
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
  }
  return false;
}

/** The name a typo most likely meant (edit distance at most 2), if any. */
function closestName(typo: string, names: string[]): string | undefined {
  let best: { name: string; d: number } | undefined;
  for (const c of names) {
    const d = editDistance(typo.toLowerCase(), c);
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
