import { createHash, timingSafeEqual } from 'node:crypto';
import { badRequest } from '../envelope.ts';
import { stringField } from '../router.ts';
import type { Route } from '../router.ts';
import { sanitizePolicies } from './token.ts';

function sameSecret(a: string, b: string): boolean {
  // Hash first so the comparison is constant-time whatever the lengths.
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

/** `auth/approle/login` for the single AppRole the development Vault is given. */
export const approleRoutes: Route[] = [
  {
    pattern: /^auth\/approle\/login$/,
    mountType: 'approle',
    unauthenticated: true,
    handlers: {
      update: (req, state) => {
        const roleId = stringField(req.data, 'role_id')?.trim();
        const secretId = stringField(req.data, 'secret_id')?.trim() ?? '';
        if (!roleId) throw badRequest('missing role_id');
        const role = state.approle;
        // Evaluate both comparisons so a wrong role id and a wrong secret id
        // take the same time and give the same answer.
        const roleOk = role ? sameSecret(roleId, role.roleId) : false;
        const secretOk = role ? sameSecret(secretId, role.secretId) : false;
        if (!role || !roleOk || !secretOk) throw badRequest('invalid role or secret ID');

        const calc = state.tokens.calculateTtl(role.tokenTtlSeconds, 0, role.tokenMaxTtlSeconds ?? 0);
        const token = state.tokens.create({
          policies: sanitizePolicies(role.policies, true),
          meta: { role_name: role.roleName ?? 'jit-broker' },
          displayName: 'approle',
          path: 'auth/approle/login',
          creationTtl: calc.ttl,
          renewTtl: role.tokenTtlSeconds,
          maxTtl: calc.maxTtl,
          explicitMaxTtl: 0,
          renewable: true,
        });
        return { data: null, auth: state.authBlock(token, calc.ttl), warnings: calc.warnings };
      },
    },
  },
];
