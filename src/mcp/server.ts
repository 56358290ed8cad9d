import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { JitClient } from '../client/jit-client.ts';
import { packageVersion } from '../lib/package-version.ts';
import { registerJitTools } from './tools.ts';

const INSTRUCTIONS = `Tools of the JIT credential broker. You hold no standing write credentials: when a task needs one, \
request it with request_vault_credential or request_gate_credential, naming exactly the paths/refs and capabilities needed, \
the lowest tier that fits and an honest reason. Tier 1 may be issued at once; tier 2/3 wait for human approval: the request \
call waits for it when you asked for progress notifications, else call wait_for_decision (or a decision webhook arrives in your \
session), then claim_credential. Revoke credentials when done.`;

/** An MCP server exposing the broker's agent endpoints as tools, through `client`. */
export function createJitMcpServer(client: JitClient, log: (line: string) => void = () => {}): McpServer {
  const server = new McpServer({ name: 'jit-broker', version: packageVersion() }, { instructions: INSTRUCTIONS });
  registerJitTools(server, client, log);
  return server;
}

/**
 * Serves the tools over stdio until stdin closes. stdout carries JSON-RPC
 * only: anything else written there would corrupt the stream, so stray
 * console output is sent to stderr with the logs.
 */
export async function runStdioMcpServer(client: JitClient, log: (line: string) => void): Promise<void> {
  for (const level of ['log', 'info', 'debug'] as const) console[level] = (...args: unknown[]) => console.error(...args);
  const server = createJitMcpServer(client, log);
  const transport = new StdioServerTransport();
  const closed = new Promise<void>((resolve) => {
    process.stdin.once('end', resolve);
    process.stdin.once('close', resolve);
  });
  await server.connect(transport);
  log(`serving the JIT broker at ${client.baseUrl} over stdio`);
  await closed;
  await server.close();
}
