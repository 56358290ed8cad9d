/**
 * `--help` of the agent-side commands but `request` (which prints its own):
 * shared by the broker's `jit` (src/cli/help.ts) and the agent package's
 * `jit-agent`. docs/cli.md is the long form.
 */

export const AGENT_ENV = `Environment
  JIT_URL          the broker (default http://127.0.0.1:8787)
  JIT_AGENT_TOKEN  the agent token "jit agent add NAME" printed (required)`;

export const AGENT_EXIT = `Exit codes
  0 done; 1 the broker answered with an error (its code and detail on stderr);
  2 wrong use or JIT_AGENT_TOKEN/JIT_URL missing or bad; 3 broker unreachable.`;

export const AGENT_HELP: Record<string, string> = {
  status: `Usage: jit status ID [--wait [--wait-timeout DURATION]] [--format text|json]

Agent side: shows the agent's own request as the broker sees it: status,
decision, what was granted, credential metadata. Never the secret.

Options
  --format text|json       a summary (default) or the broker's JSON
  --wait                   follow the request's decision stream until it is decided
                           (no polling; reconnects with Last-Event-ID if it drops) and
                           show it then; the decision, and the granted scope when the
                           approver narrowed it, also on stderr. Exit 0 when approved
                           or issued, 1 for any other decision
  --wait-timeout DURATION  give up waiting after this long (default 10m)

${AGENT_ENV}

${AGENT_EXIT}`,

  claim: `Usage: jit claim ID [--format env|json]

Agent side: claims the credential of an approved request. It is minted and
shown only this once, on stdout: "export VAULT_TOKEN=…" lines to eval (or
JIT_GATE_CREDENTIAL=… for a gate credential), or JSON.

Options
  --format env|json   export lines (default) or the broker's JSON

${AGENT_ENV}

${AGENT_EXIT}`,

  revoke: `Usage: jit revoke ID [--format text|json]

Agent side: ends the credential now (or cancels a request still pending or
approved). Revoking twice is not an error.

Options
  --format text|json   a summary (default) or the broker's JSON

${AGENT_ENV}

${AGENT_EXIT}`,

  mcp: `Usage: jit mcp

Agent side: an MCP server on stdio offering the agent operations as tools
(request, wait_for_decision, status, claim, revoke), for Claude Code and other
MCP hosts. The agent package's "npx jit-agent mcp" is the same server.
stdout carries JSON-RPC; logs go to stderr. Runs until stdin closes.

${AGENT_ENV}

Exit codes
  0 stdin closed; 2 JIT_AGENT_TOKEN/JIT_URL missing or bad.`,
};
