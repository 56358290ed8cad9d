import { JitOptionError } from './errors.ts';
import { JitClient, type JitClientOptions } from './jit-client.ts';

/** Where the agent side finds the broker when `JIT_URL` is not set. */
export const DEFAULT_JIT_URL = 'http://127.0.0.1:8787';

/** A misconfigured agent environment; the message names the variable. */
export class ClientConfigError extends Error {
  override name = 'ClientConfigError';
}

/**
 * The agent-side client from `JIT_URL` (default http://127.0.0.1:8787) and
 * `JIT_AGENT_TOKEN`. Throws ClientConfigError naming the bad variable.
 */
export function jitClientFromEnv(env: Record<string, string | undefined>, overrides: Partial<Omit<JitClientOptions, 'baseUrl' | 'token'>> = {}): JitClient {
  const token = env.JIT_AGENT_TOKEN?.trim();
  if (!token) throw new ClientConfigError('JIT_AGENT_TOKEN is not set: export the agent token that "jit agent add NAME" printed');
  const baseUrl = env.JIT_URL?.trim() || DEFAULT_JIT_URL;
  try {
    return new JitClient({ ...overrides, baseUrl, token });
  } catch (err) {
    if (!(err instanceof JitOptionError)) throw err;
    throw new ClientConfigError(err.field === 'token' ? `JIT_AGENT_TOKEN: ${err.message}` : `JIT_URL: the value ${err.detail}`);
  }
}
