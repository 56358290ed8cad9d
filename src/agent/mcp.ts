import { ClientConfigError, jitClientFromEnv } from '../client/env.ts';
import type { CliIo } from '../lib/cli-io.ts';
import { UsageError, parseCommandArgs } from '../lib/cli-args.ts';
import { EXIT } from './common.ts';

const USAGE = 'jit mcp   (an MCP server on stdio; reads JIT_URL and JIT_AGENT_TOKEN)';

/**
 * `jit mcp`: the broker's agent endpoints as MCP tools over stdio, for
 * Claude Code and other MCP hosts. Logs go to stderr; stdout is JSON-RPC.
 */
export async function mcpCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {}, USAGE);
  if (values.help) return (io.out(`usage: ${USAGE}`), EXIT.ok);
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"\nusage: ${USAGE}`);
  let client;
  try {
    client = jitClientFromEnv(io.env);
  } catch (err) {
    if (err instanceof ClientConfigError) {
      io.err(`jit mcp: ${err.message}`);
      return EXIT.usage;
    }
    throw err;
  }
  // Loaded here so the other commands do not pay for the MCP SDK.
  const { runStdioMcpServer } = await import('../mcp/server.ts');
  await runStdioMcpServer(client, (line) => io.err(`jit mcp: ${line}`));
  return EXIT.ok;
}
