import type { CliIo } from '../lib/cli-io.ts';

/** One agent-side command: its arguments after the name, and the exit code. */
export type AgentCommand = (args: string[], io: CliIo) => Promise<number>;

/**
 * The agent-side commands (HTTP only: JIT_URL, JIT_AGENT_TOKEN), loaded
 * when they run. One table for both entries: the broker's `jit` (which
 * keeps them as documented) and the agent package's `jit-agent`.
 */
export const AGENT_COMMANDS: Record<string, () => Promise<AgentCommand>> = {
  request: async () => (await import('./request.ts')).requestCommand,
  status: async () => (await import('./ops.ts')).statusCommand,
  claim: async () => (await import('./ops.ts')).claimCommand,
  revoke: async () => (await import('./ops.ts')).revokeCommand,
  mcp: async () => (await import('./mcp.ts')).mcpCommand,
};

/** The agent side's lines of `jit --help` (and all of `jit-agent --help`). */
export const AGENT_USAGE = `  request vault --path PATH:CAPS... --tier N --reason TEXT [--ttl D] [--session KEY] [--wait [--claim]]
  request gate --repo R --ref REF... --tier N --reason TEXT [...]
                                      ask for a credential; "jit request --help" for all options
  status ID [--wait]                  the agent's own request (never the secret); --wait follows it until decided
  claim ID [--format env|json]        claim an approved credential once (stdout only)
  revoke ID                           end the credential now
  mcp                                 MCP server on stdio with the same operations as tools`;
