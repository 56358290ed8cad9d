import { Hono, type Context } from 'hono';
import { claimCredential } from '../../broker/claim.ts';
import type { BrokerDeps } from '../../broker/deps.ts';
import { BrokerError, notFound } from '../../broker/errors.ts';
import { requestCredential } from '../../broker/request-credential.ts';
import { revokeRequest } from '../../broker/revoke.ts';
import { CredentialRequestBody, IdempotencyKey, describeZodError } from '../../broker/schemas.ts';
import { requestView } from '../../broker/view.ts';
import { isId } from '../../lib/ids.ts';
import { getConnInfo } from '@hono/node-server/conninfo';
import { readJson } from '../body.ts';
import type { AppEnv } from '../env.ts';
import { createAuthFailureAuditor } from '../auth-failure-audit.ts';

/** Routes an agent calls with its bearer token. */
/** `onChange` runs after a request is created, claimed or revoked (the Telegram bot re-syncs). */
export function agentRoutes(deps: BrokerDeps, onChange: () => void = () => {}) {
  const app = new Hono<AppEnv>();
  const authFailures = createAuthFailureAuditor(deps);

  app.use('*', async (c, next) => {
    const header = c.req.header('authorization') ?? '';
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const agent = m ? deps.agents.authenticate(m[1]!) : undefined;
    if (!agent) {
      const reason = header ? 'unknown or malformed token' : 'no bearer token';
      c.get('log').warn({ reason }, 'agent authentication failed');
      authFailures.record(clientAddress(c), reason);
      throw new BrokerError('UNAUTHORIZED', header ? 'the bearer token is not valid' : 'send the agent token as Authorization: Bearer <token>');
    }
    c.set('agent', agent);
    await next();
  });

  app.post('/request', async (c) => {
    const parsed = CredentialRequestBody.safeParse(await readJson(c));
    if (!parsed.success) throw new BrokerError('BAD_REQUEST', describeZodError(parsed.error));
    const rawKey = c.req.header('idempotency-key');
    let key: string | undefined;
    if (rawKey !== undefined) {
      const k = IdempotencyKey.safeParse(rawKey);
      if (!k.success) throw new BrokerError('BAD_REQUEST', describeZodError(k.error));
      key = k.data;
    }
    const outcome = await requestCredential(deps, c.get('agent'), parsed.data, key);
    if ('replayed' in outcome) c.header('Idempotent-Replayed', 'true');
    else if (outcome.status === 202) onChange();
    c.header('Cache-Control', 'no-store');
    return c.json(outcome.body, outcome.status);
  });

  app.get('/requests/:id', (c) => c.json(requestView(deps, ownRequest(deps, c))));

  app.post('/requests/:id/claim', async (c) => {
    c.header('Cache-Control', 'no-store');
    const issued = await claimCredential(deps, ownRequest(deps, c));
    onChange();
    return c.json(issued, 201);
  });

  app.post('/requests/:id/revoke', async (c) => {
    const row = ownRequest(deps, c);
    const view = await revokeRequest(deps, row, `agent:${c.get('agent').name}`, 'revoked by the agent');
    onChange();
    return c.json(view);
  });

  return app;
}

function clientAddress(c: Context<AppEnv>): string {
  try {
    return getConnInfo(c).remote.address ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The caller's own request; another agent's id is indistinguishable from an unknown one (404). */
function ownRequest(deps: BrokerDeps, c: Context<AppEnv>) {
  const id = c.req.param('id') ?? '';
  const row = isId('req', id) ? deps.repo.getRequest(id) : undefined;
  if (!row || row.agent_id !== c.get('agent').id) throw notFound(`request ${id.slice(0, 64)}`);
  return row;
}
