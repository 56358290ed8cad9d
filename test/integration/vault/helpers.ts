import NodeVault from 'node-vault';

/** A node-vault client as the broker would build one (lists as GET ?list=1). */
export function nodeVault(url: string, token?: string): NodeVault.client {
  const client = NodeVault({ endpoint: url, noCustomHTTPVerbs: true, requestOptions: { timeout: 5000 } });
  client.token = token ?? '';
  return client;
}

/**
 * The HTTP status of a node-vault call: 200 when it resolved with a body,
 * 204 when it resolved empty, Vault's status when it was rejected.
 */
export async function statusOf(call: Promise<unknown>): Promise<number> {
  try {
    const body = await call;
    return body === '' || body === undefined ? 204 : 200;
  } catch (err) {
    const status = (err as { response?: { statusCode?: number } }).response?.statusCode;
    if (typeof status !== 'number') throw err;
    return status;
  }
}

/** The rejection of a node-vault call as `{status, errors}`. */
export async function failureOf(call: Promise<unknown>): Promise<{ status: number; errors: unknown }> {
  try {
    await call;
  } catch (err) {
    const r = (err as { response?: { statusCode?: number; body?: { errors?: unknown } } }).response;
    if (!r || typeof r.statusCode !== 'number') throw err;
    return { status: r.statusCode, errors: r.body?.errors };
  }
  throw new Error('expected the call to fail');
}

/** A raw HTTP request (for what node-vault cannot send: bad JSON, odd methods, no token). */
export async function rawRequest(
  url: string,
  init: { method?: string; path: string; token?: string; body?: string | Buffer; headers?: Record<string, string> },
): Promise<{ status: number; json: unknown; text: string }> {
  const headers: Record<string, string> = { ...init.headers };
  if (init.token) headers['X-Vault-Token'] = init.token;
  const res = await fetch(`${url}${init.path}`, { method: init.method ?? 'GET', headers, body: init.body });
  const text = await res.text();
  let json: unknown = undefined;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}
