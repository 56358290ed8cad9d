import { VaultHttpError, badRequest, unsupportedPath } from '../envelope.ts';
import { KvError } from '../kv.ts';
import { boolField, intField } from '../router.ts';
import type { Handler, Route, VaultRequest } from '../router.ts';

// Every first path segment except these is treated as a KV v2 mount.
const MOUNT = '(?!(?:sys|auth|cubbyhole)/)(?<mount>[^/]+)';

function where(req: VaultRequest): { mount: string; path: string } {
  return { mount: req.params['mount']!, path: req.params['path'] ?? '' };
}

function kvErrors<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof KvError) throw new VaultHttpError(e.status, e.message ? [e.message] : []);
    throw e;
  }
}

function dataObject(req: VaultRequest): Record<string, unknown> {
  const data = req.data['data'];
  if (!data || typeof data !== 'object' || Array.isArray(data)) throw badRequest('no data provided');
  return data as Record<string, unknown>;
}

function casOption(req: VaultRequest): number | undefined {
  const options = req.data['options'];
  if (options === undefined || options === null) return undefined;
  if (typeof options !== 'object' || Array.isArray(options)) throw badRequest('invalid options');
  return intField(options as Record<string, unknown>, 'cas');
}

function versionsField(req: VaultRequest): number[] {
  const v = req.data['versions'];
  const list = typeof v === 'string' ? v.split(',').map(Number) : v;
  if (!Array.isArray(list) || list.length === 0 || !list.every((n) => Number.isInteger(n))) {
    throw badRequest('no version number provided');
  }
  return list as number[];
}

const write: Handler = (req, state) => {
  const { mount, path } = where(req);
  const data = dataObject(req);
  return { data: kvErrors(() => state.kv.write(mount, path, data, casOption(req))) };
};

const writeMetadata: Handler = (req, state) => {
  const { mount, path } = where(req);
  if (!path) throw unsupportedPath();
  const custom = req.data['custom_metadata'];
  if (custom !== undefined && custom !== null) {
    const ok = typeof custom === 'object' && !Array.isArray(custom) && Object.values(custom).every((v) => typeof v === 'string');
    if (!ok) throw badRequest('custom_metadata must be a map of strings');
  }
  state.kv.writeMetadata(mount, path, {
    maxVersions: intField(req.data, 'max_versions'),
    casRequired: boolField(req.data, 'cas_required'),
    customMetadata: custom as Record<string, string> | null | undefined,
  });
};

function versionsRoute(verb: 'delete' | 'undelete' | 'destroy'): Route {
  return {
    pattern: new RegExp(`^${MOUNT}/${verb}/(?<path>.+)$`),
    mountType: 'kv',
    handlers: {
      update: (req, state) => {
        const { mount, path } = where(req);
        const versions = versionsField(req);
        if (verb === 'delete') state.kv.deleteVersions(mount, path, versions);
        else if (verb === 'undelete') state.kv.undeleteVersions(mount, path, versions);
        else state.kv.destroyVersions(mount, path, versions);
      },
    },
  };
}

/** KV version 2 on every mount name (`M/data`, `M/metadata`, `M/delete|undelete|destroy`). */
export const kvRoutes: Route[] = [
  {
    pattern: new RegExp(`^${MOUNT}/data/(?<path>.+)$`),
    mountType: 'kv',
    exists: (req, state) => state.kv.exists(req.params['mount']!, req.params['path']!),
    handlers: {
      read: (req, state) => {
        const { mount, path } = where(req);
        const result = state.kv.read(mount, path, intField(req.data, 'version'));
        if (result.kind === 'missing') throw new VaultHttpError(404, []);
        if (result.kind === 'deleted') {
          return { status: 404, data: { data: null, metadata: result.metadata } };
        }
        return { data: { data: result.data, metadata: result.metadata } };
      },
      create: write,
      update: write,
      patch: (req, state) => {
        const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
        if (type !== 'application/merge-patch+json') {
          throw new VaultHttpError(415, ['PATCH requires Content-Type application/merge-patch+json']);
        }
        const { mount, path } = where(req);
        const data = dataObject(req);
        return { data: kvErrors(() => state.kv.patch(mount, path, data, casOption(req))) };
      },
      delete: (req, state) => {
        const { mount, path } = where(req);
        state.kv.deleteVersions(mount, path);
      },
    },
  },
  {
    pattern: new RegExp(`^${MOUNT}/metadata/(?<path>.*)$`),
    mountType: 'kv',
    exists: (req, state) => state.kv.exists(req.params['mount']!, req.params['path']!),
    handlers: {
      list: (req, state) => {
        const { mount, path } = where(req);
        const keys = state.kv.list(mount, path);
        if (keys.length === 0) throw new VaultHttpError(404, []);
        return { data: { keys } };
      },
      read: (req, state) => {
        const { mount, path } = where(req);
        const meta = path ? state.kv.readMetadata(mount, path) : undefined;
        if (!meta) throw new VaultHttpError(404, []);
        return { data: meta };
      },
      create: writeMetadata,
      update: writeMetadata,
      delete: (req, state) => {
        const { mount, path } = where(req);
        state.kv.deleteMetadata(mount, path);
      },
    },
  },
  versionsRoute('delete'),
  versionsRoute('undelete'),
  versionsRoute('destroy'),
];
