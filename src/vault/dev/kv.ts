import type { Clock } from '../../lib/clock.ts';
import { rfc3339 } from './duration.ts';
import { setOwn } from '../../lib/own-property.ts';

interface KvVersion {
  data: Record<string, unknown> | null;
  createdMs: number;
  deletionMs: number | null;
  destroyed: boolean;
}

interface KvSecret {
  versions: Map<number, KvVersion>;
  currentVersion: number;
  oldestVersion: number;
  createdMs: number;
  updatedMs: number;
  maxVersions: number;
  casRequired: boolean;
  customMetadata: Record<string, string> | null;
}

/** A KV failure with the HTTP status Vault's KV v2 plugin answers with. */
export class KvError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export type KvRead =
  | { kind: 'ok'; data: Record<string, unknown>; metadata: Record<string, unknown> }
  | { kind: 'deleted'; metadata: Record<string, unknown> }
  | { kind: 'missing' };

export interface KvMetadataUpdate {
  maxVersions?: number;
  casRequired?: boolean;
  customMetadata?: Record<string, string> | null;
}

const DEFAULT_MAX_VERSIONS = 10;

/**
 * KV version 2 storage for any number of mounts: versioned writes with
 * check-and-set, soft delete / undelete / destroy, metadata and folder
 * listing, timestamped with the injected clock.
 */
export class KvStore {
  private readonly mounts = new Map<string, Map<string, KvSecret>>();

  constructor(private readonly clock: Clock) {}

  /** Whether metadata exists for the key (Vault's create-vs-update existence check). */
  exists(mount: string, path: string): boolean {
    return this.mounts.get(mount)?.has(path) ?? false;
  }

  read(mount: string, path: string, version?: number): KvRead {
    const secret = this.secret(mount, path);
    if (!secret) return { kind: 'missing' };
    const n = version && version > 0 ? version : secret.currentVersion;
    const v = secret.versions.get(n);
    if (!v) return { kind: 'missing' };
    const metadata = this.versionMetadata(secret, n, v);
    if (v.destroyed || v.deletionMs !== null) return { kind: 'deleted', metadata };
    return { kind: 'ok', data: structuredClone(v.data ?? {}), metadata };
  }

  write(mount: string, path: string, data: Record<string, unknown>, cas?: number): Record<string, unknown> {
    const now = this.clock.now();
    this.checkCas(this.secret(mount, path), cas);
    const secret = this.ensureSecret(mount, path);
    const n = secret.currentVersion + 1;
    const v: KvVersion = { data: structuredClone(data), createdMs: now, deletionMs: null, destroyed: false };
    secret.versions.set(n, v);
    secret.currentVersion = n;
    secret.updatedMs = now;
    if (secret.oldestVersion === 0) secret.oldestVersion = n;
    this.trimVersions(secret);
    return this.versionMetadata(secret, n, v);
  }

  /** JSON merge patch (RFC 7386) of the current version into a new version. */
  patch(mount: string, path: string, patch: Record<string, unknown>, cas?: number): Record<string, unknown> {
    const current = this.read(mount, path);
    if (current.kind !== 'ok') throw new KvError(404, '');
    return this.write(mount, path, mergePatch(current.data, patch) as Record<string, unknown>, cas);
  }

  /** Soft-deletes the given versions, or the latest when none are given. */
  deleteVersions(mount: string, path: string, versions?: number[]): void {
    const secret = this.secret(mount, path);
    if (!secret) return;
    const now = this.clock.now();
    for (const n of versions ?? [secret.currentVersion]) {
      const v = secret.versions.get(n);
      if (v && !v.destroyed && v.deletionMs === null) v.deletionMs = now;
    }
  }

  undeleteVersions(mount: string, path: string, versions: number[]): void {
    const secret = this.secret(mount, path);
    for (const n of versions) {
      const v = secret?.versions.get(n);
      if (v && !v.destroyed) v.deletionMs = null;
    }
  }

  destroyVersions(mount: string, path: string, versions: number[]): void {
    const secret = this.secret(mount, path);
    for (const n of versions) {
      const v = secret?.versions.get(n);
      if (v) {
        v.destroyed = true;
        v.data = null;
      }
    }
  }

  readMetadata(mount: string, path: string): Record<string, unknown> | undefined {
    const secret = this.secret(mount, path);
    if (!secret) return undefined;
    const versions: Record<string, unknown> = {};
    for (const [n, v] of secret.versions) {
      versions[String(n)] = {
        created_time: rfc3339(v.createdMs),
        deletion_time: v.deletionMs === null ? '' : rfc3339(v.deletionMs),
        destroyed: v.destroyed,
      };
    }
    return {
      cas_required: secret.casRequired,
      created_time: rfc3339(secret.createdMs),
      current_version: secret.currentVersion,
      custom_metadata: secret.customMetadata,
      delete_version_after: '0s',
      max_versions: secret.maxVersions,
      oldest_version: secret.oldestVersion,
      updated_time: rfc3339(secret.updatedMs),
      versions,
    };
  }

  writeMetadata(mount: string, path: string, update: KvMetadataUpdate): void {
    const secret = this.ensureSecret(mount, path);
    if (update.maxVersions !== undefined) secret.maxVersions = update.maxVersions;
    if (update.casRequired !== undefined) secret.casRequired = update.casRequired;
    if (update.customMetadata !== undefined) secret.customMetadata = update.customMetadata;
    secret.updatedMs = this.clock.now();
    this.trimVersions(secret);
  }

  /** Deletes every version and the metadata of a key. */
  deleteMetadata(mount: string, path: string): void {
    this.mounts.get(mount)?.delete(path);
  }

  /** Immediate children of `prefix` (which is "" or ends in "/"); folders end in "/". */
  list(mount: string, prefix: string): string[] {
    const keys = new Set<string>();
    for (const key of this.mounts.get(mount)?.keys() ?? []) {
      if (!key.startsWith(prefix)) continue;
      const rest = key.slice(prefix.length);
      if (rest === '') continue;
      const slash = rest.indexOf('/');
      keys.add(slash >= 0 ? rest.slice(0, slash + 1) : rest);
    }
    return [...keys].sort();
  }

  /** Every `mount/path` key (diagnostics). */
  keys(): string[] {
    const out: string[] = [];
    for (const [mount, secrets] of this.mounts) for (const path of secrets.keys()) out.push(`${mount}/${path}`);
    return out.sort();
  }

  private secret(mount: string, path: string): KvSecret | undefined {
    return this.mounts.get(mount)?.get(path);
  }

  /** The key's metadata, created empty (no versions yet) when missing. */
  private ensureSecret(mount: string, path: string): KvSecret {
    let m = this.mounts.get(mount);
    if (!m) {
      m = new Map();
      this.mounts.set(mount, m);
    }
    let secret = m.get(path);
    if (!secret) {
      const now = this.clock.now();
      secret = {
        versions: new Map(),
        currentVersion: 0,
        oldestVersion: 0,
        createdMs: now,
        updatedMs: now,
        maxVersions: 0,
        casRequired: false,
        customMetadata: null,
      };
      m.set(path, secret);
    }
    return secret;
  }

  private checkCas(secret: KvSecret | undefined, cas: number | undefined): void {
    if (cas === undefined) {
      if (secret?.casRequired) throw new KvError(400, 'check-and-set parameter required for this call');
      return;
    }
    if (cas !== (secret?.currentVersion ?? 0)) {
      throw new KvError(400, 'check-and-set parameter did not match the current version');
    }
  }

  private trimVersions(secret: KvSecret): void {
    const max = secret.maxVersions > 0 ? secret.maxVersions : DEFAULT_MAX_VERSIONS;
    while (secret.currentVersion - secret.oldestVersion + 1 > max) {
      secret.versions.delete(secret.oldestVersion);
      secret.oldestVersion += 1;
    }
  }

  private versionMetadata(secret: KvSecret, n: number, v: KvVersion): Record<string, unknown> {
    return {
      created_time: rfc3339(v.createdMs),
      custom_metadata: secret.customMetadata,
      deletion_time: v.deletionMs === null ? '' : rfc3339(v.deletionMs),
      destroyed: v.destroyed,
      version: n,
    };
  }
}

function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> =
    target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else setOwn(out, k, mergePatch(Object.hasOwn(out, k) ? out[k] : undefined, v));
  }
  return out;
}
