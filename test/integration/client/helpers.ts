import type { Harness } from '../../helpers/broker-harness.ts';

/** The `export NAME=value` lines the agent CLI prints, as a record (single quotes undone). */
export function parseExports(stdout: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const m = /^export ([A-Z_]+)=(.*)$/.exec(line);
    if (!m) continue;
    const raw = m[2]!;
    vars[m[1]!] = raw.startsWith("'") ? raw.slice(1, -1).replaceAll(`'\\''`, "'") : raw;
  }
  return vars;
}

/**
 * Waits until a pending request with this reason exists and returns its id.
 * `creator` is the child process that creates it: however long that process
 * takes to start (seconds on a loaded machine), the wait ends only when the
 * request appears or the process has ended without it, never on a clock.
 */
export async function pendingWithReason(h: Harness, reason: string, creator: Promise<{ code: number | null; stdout: string; stderr: string }>): Promise<string> {
  let ended: { code: number | null; stderr: string } | undefined;
  void creator.then(
    (r) => (ended = r),
    (err: Error) => (ended = { code: null, stderr: err.message }),
  );
  for (;;) {
    const row = (await h.broker.deps.storage.requests.list({ status: 'pending', limit: 50 })).find((r) => r.reason === reason);
    if (row) return row.id;
    if (ended) throw new Error(`no pending request with reason "${reason}": its process ended (exit ${ended.code}):\n${ended.stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Waits until a decision stream was opened on request `id`: the broker logs
 * its request line once the stream is registered (before its first byte),
 * so a `jit … --wait` then gets any decision made after.
 */
export async function streamOpened(h: Harness, id: string): Promise<void> {
  const line = `"method":"GET","path":"/jit/requests/${id}/events","status":200`;
  while (!h.logs().includes(line)) await new Promise((r) => setTimeout(r, 20));
}

/** Resolves when a Vault token no longer works (the dev Vault answers 403 for a revoked token). */
export async function tokenIsDead(h: Harness, token: string, path: string): Promise<boolean> {
  try {
    await h.vaultAs(token).read(path);
    return false;
  } catch (err) {
    return (err as { response?: { statusCode?: number } }).response?.statusCode === 403;
  }
}

/** An MCP client connected over stdio to an agent-side MCP server process (`jit mcp` or the package's `jit-agent mcp`). */
export async function connectMcp(command: string, args: string[], env: Record<string, string>, cwd?: string) {
  const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
  const { StdioClientTransport } = await import('@modelcontextprotocol/sdk/client/stdio.js');
  const transport = new StdioClientTransport({ command, args, env: { PATH: process.env.PATH ?? '', ...env }, stderr: 'pipe', ...(cwd ? { cwd } : {}) });
  let stderr = '';
  transport.stderr?.on('data', (d) => (stderr += d));
  const client = new Client({ name: 'jit-test', version: '1.0.0' });
  await client.connect(transport);
  return {
    client,
    stderr: () => stderr,
    /** A tool call that asks for progress (the SDK sends a progressToken) and records the notifications. */
    async callWithProgress(name: string, args: Record<string, unknown>) {
      const progress: { progress: number; message?: string; at: number }[] = [];
      const result = await client.callTool({ name, arguments: args }, undefined, {
        onprogress: (p) => void progress.push({ progress: p.progress, ...(p.message !== undefined ? { message: p.message } : {}), at: Date.now() }),
        resetTimeoutOnProgress: true,
        timeout: 120_000,
      });
      return { result: result as { content: { type: string; text?: string }[]; structuredContent?: any; isError?: boolean }, progress, at: Date.now() };
    },
    close: () => client.close(),
  };
}

/**
 * Waits until a request with this reason exists (of any status) and returns
 * its id; `creator` (the call or process making it) ending first fails the
 * wait with what it returned, rather than waiting for the test's timeout.
 */
export async function requestWithReason(h: Harness, reason: string, creator?: Promise<unknown>): Promise<string> {
  let ended: unknown;
  void creator?.then(
    (r) => (ended = { ended: r }),
    (err: unknown) => (ended = { failed: String(err) }),
  );
  for (;;) {
    const row = (await h.broker.deps.storage.requests.list({ limit: 100 })).find((r) => r.reason === reason);
    if (row) return row.id;
    if (ended) throw new Error(`no request with reason "${reason}": its creator ended first: ${JSON.stringify(ended).slice(0, 2000)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
