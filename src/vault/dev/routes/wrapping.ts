import { rfc3339 } from '../duration.ts';
import { badRequest } from '../envelope.ts';
import { stringField } from '../router.ts';
import type { Route, VaultRequest } from '../router.ts';
import type { DevVaultState } from '../state.ts';
import type { TokenEntry } from '../token-store.ts';

const INVALID = 'wrapping token is not valid or does not exist';

function wrappingToken(state: DevVaultState, id: string | undefined): TokenEntry | undefined {
  const t = id ? state.tokens.get(id) : undefined;
  return t?.wrapped ? t : undefined;
}

/** The wrapping token a request names: in the body, or else the caller's own token. */
function named(req: VaultRequest): string | undefined {
  return stringField(req.data, 'token') || req.headerToken;
}

/**
 * Replaces a response with a single-use response-wrapping token that holds
 * it, returning Vault's wrapped envelope (only `wrap_info` is set).
 */
export function wrapResponse(
  state: DevVaultState,
  wireBody: Record<string, unknown>,
  ttl: number,
  creationPath: string,
): Record<string, unknown> {
  const wrappedAccessor = (wireBody['auth'] as { accessor?: string } | null)?.accessor;
  const token = state.tokens.create({
    policies: ['response-wrapping'],
    meta: null,
    displayName: 'response-wrapping',
    numUses: 1,
    path: creationPath,
    creationTtl: ttl,
    maxTtl: ttl,
    explicitMaxTtl: ttl,
    renewable: false,
    wrapped: {
      body: JSON.stringify(wireBody),
      creationPath,
      ttl,
      creationMs: state.clock.now(),
      wrappedAccessor,
    },
  });
  const wrapInfo: Record<string, unknown> = {
    token: token.id,
    accessor: token.accessor,
    ttl,
    creation_time: rfc3339(token.creationMs),
    creation_path: creationPath,
  };
  if (wrappedAccessor) wrapInfo['wrapped_accessor'] = wrappedAccessor;
  return {
    request_id: '',
    lease_id: '',
    renewable: false,
    lease_duration: 0,
    data: null,
    wrap_info: wrapInfo,
    warnings: null,
    auth: null,
    mount_type: '',
  };
}

/** `sys/wrapping/{wrap,unwrap,lookup}`. */
export const wrappingRoutes: Route[] = [
  {
    pattern: /^sys\/wrapping\/wrap$/,
    mountType: 'system',
    handlers: {
      update: (req) => {
        if (req.wrapTtl <= 0) throw badRequest('endpoint requires response wrapping to be used');
        return { data: { ...req.data }, dataAtTopLevel: true };
      },
    },
  },
  {
    pattern: /^sys\/wrapping\/unwrap$/,
    mountType: 'system',
    // Vault validates the wrapping token before anything else, so a spent
    // or expired one is a 400, not a 403.
    preAuth: (req, state) => {
      if (!wrappingToken(state, named(req))) throw badRequest(INVALID);
    },
    handlers: {
      update: (req, state) => {
        const bodyToken = stringField(req.data, 'token');
        const target = wrappingToken(state, named(req));
        if (!target?.wrapped) throw badRequest(INVALID);
        // A third party unwrapping with its own token revokes the wrapping
        // token here; a wrapping token used as the caller token has spent
        // its single use and is revoked by the server after this request.
        if (bodyToken) state.tokens.revoke(target);
        return { raw: { status: 200, body: JSON.parse(target.wrapped.body) } };
      },
    },
  },
  {
    pattern: /^sys\/wrapping\/lookup$/,
    mountType: 'system',
    unauthenticated: true,
    handlers: {
      update: (req, state) => {
        const t = wrappingToken(state, stringField(req.data, 'token'));
        if (!t?.wrapped) throw badRequest(INVALID);
        return {
          data: {
            creation_path: t.wrapped.creationPath,
            creation_time: rfc3339(t.wrapped.creationMs),
            creation_ttl: t.wrapped.ttl,
          },
        };
      },
    },
  },
];
