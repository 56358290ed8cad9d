import { Hono } from 'hono';
import { html } from 'hono/html';
import type { BrokerDeps } from '../../broker/deps.ts';
import type { ConsoleEnv } from '../env.ts';
import { when } from './common.ts';

/** GET /keys: the signing keys (id, state, dates) and the public halves the JWKS publishes; never a private key. */
export function keysPage(deps: BrokerDeps): Hono<ConsoleEnv> {
  const app = new Hono<ConsoleEnv>();
  app.get('/keys', async (c) => {
    const keys = deps.keys.list();
    const published = new Map(deps.keys.jwks().keys.map((k) => [k.kid, k.x]));
    return c.get('page')(
      'Signing keys',
      html`<h1>Signing keys</h1>
        <p>Ed25519 keys sign gate credentials, webhooks and the audit log's heads. Their public halves are served at <a href="/.well-known/jwks.json">/.well-known/jwks.json</a>. Rotate or revoke on the broker host: <code>jit keys rotate</code>, <code>jit keys revoke KID</code>.</p>
        ${keys.length === 0
          ? html`<p>No signing key yet.</p>`
          : html`<table>
              <thead><tr><th scope="col">Key id</th><th scope="col">State</th><th scope="col">Source</th><th scope="col">Created</th><th scope="col">Leaves the JWKS</th><th scope="col">Public key (x)</th></tr></thead>
              <tbody>
                ${keys.map(
                  (k) => html`<tr><td><code>${k.kid}</code></td><td>${k.status}</td><td>${k.source === 'env' ? 'JIT_SIGNING_KEY' : 'generated'}</td><td>${when(k.createdAt)}</td>
                    <td>${k.revokedAt ? `revoked ${when(k.revokedAt)}` : k.dropsAt ? when(k.dropsAt) : '-'}</td>
                    <td>${published.has(k.kid) ? html`<code>${published.get(k.kid)}</code>` : 'not published'}</td></tr>`,
                )}
              </tbody>
            </table>`}
        <p>Keys kept in: ${deps.keys.location === 'database' ? 'the database' : deps.keys.location === 'memory' ? 'memory' : 'the key file next to the database'}.</p>`,
    );
  });
  return app;
}
