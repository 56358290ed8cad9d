import type { Acl, Operation } from './acl.ts';
import { VaultHttpError } from './envelope.ts';
import type { LogicalResponse } from './envelope.ts';
import type { DevVaultState } from './state.ts';
import type { TokenEntry } from './token-store.ts';

/** A request after transport parsing, as route handlers see it. */
export interface VaultRequest {
  method: string;
  op: Operation;
  /** API path without `/v1/`; list requests always end in `/`, as in Vault. */
  path: string;
  params: Record<string, string>;
  /** JSON body for writes; query parameters for reads and deletes. */
  data: Record<string, unknown>;
  headers: Record<string, string | string[] | undefined>;
  /** The token sent in X-Vault-Token / Authorization, if any (never logged). */
  headerToken: string | undefined;
  /** The authenticated caller; absent on unauthenticated routes. */
  token?: TokenEntry;
  acl?: Acl;
  /** Whether the caller's token was use-limited before this request. */
  useLimited: boolean;
  /** Requested response-wrapping TTL in seconds (0 = none). */
  wrapTtl: number;
}

export type Handler = (req: VaultRequest, state: DevVaultState) => LogicalResponse | null | undefined | void;

export interface Route {
  pattern: RegExp;
  /** `mount_type` in the envelope. */
  mountType: string;
  handlers: Partial<Record<Operation, Handler>>;
  /** Served without a token (sys/health, AppRole login). */
  unauthenticated?: boolean;
  /** Root-protected: the matching ACL rule must also grant `sudo`. */
  sudo?: boolean;
  /** Existence check deciding whether a write is `create` or `update`. */
  exists?: (req: VaultRequest, state: DevVaultState) => boolean;
  /** Runs before authentication (unwrap validates the wrapping token first). */
  preAuth?: (req: VaultRequest, state: DevVaultState) => void;
}

/** Finds the route for a path, with its named parameters. */
export function findRoute(routes: readonly Route[], path: string): { route: Route; params: Record<string, string> } | undefined {
  for (const route of routes) {
    const m = route.pattern.exec(path);
    if (m) return { route, params: { ...m.groups } };
  }
  return undefined;
}

/** The 404 Vault gives for a path no backend serves. */
export function noRoute(path: string): VaultHttpError {
  const [first, second] = path.split('/');
  if (first === 'auth' && second !== 'token' && second !== 'approle') {
    return new VaultHttpError(404, [`no handler for route "${path}". route entry not found.`]);
  }
  return new VaultHttpError(404, ['unsupported path']);
}

/** Reads a string field; absent → undefined; wrong type → 400. */
export function stringField(data: Record<string, unknown>, key: string): string | undefined {
  const v = data[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  throw new VaultHttpError(400, [`Error decoding request: '${key}' expected type 'string'`]);
}

/** Reads a boolean field the way mapstructure's WeakDecode does. */
export function boolField(data: Record<string, unknown>, key: string): boolean | undefined {
  const v = data[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number') return v !== 0;
  if (typeof v === 'string') {
    if (/^(1|t|true)$/i.test(v)) return true;
    if (/^(0|f|false)$/i.test(v) || v === '') return false;
  }
  throw new VaultHttpError(400, [`Error decoding request: '${key}' expected type 'bool'`]);
}

/** Reads an integer field (number or digit string). */
export function intField(data: Record<string, unknown>, key: string): number | undefined {
  const v = data[key];
  if (v === undefined || v === null || v === '') return undefined;
  const n = typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : v;
  if (typeof n === 'number' && Number.isSafeInteger(n)) return n;
  throw new VaultHttpError(400, [`Error decoding request: '${key}' expected type 'int'`]);
}

/** Reads a list of strings, also accepted as a comma-separated string. */
export function stringListField(data: Record<string, unknown>, key: string): string[] | undefined {
  const v = data[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v === '' ? [] : v.split(',');
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  throw new VaultHttpError(400, [`Error decoding request: '${key}' expected a list of strings`]);
}
