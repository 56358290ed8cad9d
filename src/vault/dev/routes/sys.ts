import { setOwn } from '../../../lib/own-property.ts';
import { VaultHttpError, badRequest } from '../envelope.ts';
import { PolicyParseError } from '../policy.ts';
import { stringField, stringListField } from '../router.ts';
import type { Route, VaultRequest } from '../router.ts';
import type { DevVaultState } from '../state.ts';

/** Reported by sys/health so nobody mistakes this server for a real Vault. */
export const DEV_VAULT_VERSION = '1.19.0+jit-dev-vault';

function statusParam(req: VaultRequest, key: string, fallback: number): number {
  const raw = req.data[key];
  if (typeof raw !== 'string' || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 100 || n > 999) throw badRequest(`bad code for ${key}: ${raw}`);
  return n;
}

function health(req: VaultRequest, state: DevVaultState) {
  const sealed = state.sealed;
  const status = sealed ? statusParam(req, 'sealedcode', 503) : statusParam(req, 'activecode', 200);
  const body: Record<string, unknown> = {
    initialized: true,
    sealed,
    standby: false,
    performance_standby: false,
    replication_performance_mode: 'disabled',
    replication_dr_mode: 'disabled',
    server_time_utc: Math.floor(state.clock.now() / 1000),
    version: DEV_VAULT_VERSION,
    enterprise: false,
  };
  if (!sealed) {
    body['cluster_name'] = 'jit-dev-vault';
    body['cluster_id'] = '00000000-0000-0000-0000-000000000000';
  }
  return { raw: { status, body } };
}

function policyName(req: VaultRequest): string {
  return req.params['name']!.trim().toLowerCase();
}

function decodePolicyText(raw: string): string {
  // Vault accepts the policy base64-encoded, and tries that decoding first.
  if (/^[A-Za-z0-9+/]+={0,2}$/.test(raw) && raw.length % 4 === 0) {
    const decoded = Buffer.from(raw, 'base64').toString('utf8');
    if (!decoded.includes('\ufffd')) return decoded;
  }
  return raw;
}

/** `sys/health`, `sys/policies/acl[/:name]` and `sys/capabilities-self`. */
export const sysRoutes: Route[] = [
  {
    pattern: /^sys\/health$/,
    mountType: 'system',
    unauthenticated: true,
    handlers: { read: health },
  },
  {
    pattern: /^sys\/policies\/acl\/?$/,
    mountType: 'system',
    handlers: {
      list: (_req, state) => ({ data: { keys: [...state.policyNames(), 'root'] } }),
    },
  },
  {
    pattern: /^sys\/policies\/acl\/(?<name>[^/]+)$/,
    mountType: 'system',
    handlers: {
      read: (req, state) => {
        const name = policyName(req);
        if (name === 'root') return { data: { name, policy: '' } };
        const p = state.getPolicy(name);
        if (!p) throw new VaultHttpError(404, []);
        return { data: { name, policy: p.raw } };
      },
      update: (req, state) => {
        const name = policyName(req);
        const text = stringField(req.data, 'policy');
        if (!text) throw badRequest("'policy' parameter not supplied or empty");
        if (name === 'root' || name === 'response-wrapping' || name === 'control-group') {
          throw badRequest(`cannot update "${name}" policy`);
        }
        try {
          state.putPolicy(name, decodePolicyText(text));
        } catch (e) {
          if (e instanceof PolicyParseError) throw badRequest(`failed to parse policy: ${e.message}`);
          throw e;
        }
      },
      delete: (req, state) => {
        const name = policyName(req);
        if (name === 'root' || name === 'default') throw badRequest(`cannot delete "${name}" policy`);
        state.deletePolicy(name);
      },
    },
  },
  {
    pattern: /^sys\/capabilities-self$/,
    mountType: 'system',
    handlers: {
      update: (req) => {
        const paths = stringListField(req.data, 'paths') ?? stringListField(req.data, 'path') ?? [];
        if (paths.length === 0) throw badRequest('missing paths');
        // Own properties, so a path named `__proto__` is answered like any other.
        const data: Record<string, unknown> = Object.fromEntries(paths.map((p) => [p, req.acl!.capabilities(p)]));
        if (paths.length === 1) setOwn(data, 'capabilities', data[paths[0]!]);
        return { data, dataAtTopLevel: true };
      },
    },
  },
];
