import type { Clock } from '../lib/clock.ts';
import { toVaultError } from './errors.ts';

/** Minimal structured logger (pino's `(obj, msg)` signature). */
export interface VaultLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

/** The two raw calls a token source needs, each with an explicit token (or none). */
export interface TokenSourceTransport {
  read(path: string, token: string | undefined): Promise<unknown>;
  write(path: string, data: Record<string, unknown>, token: string | undefined): Promise<unknown>;
}

/** Where the adapter's own Vault token comes from. */
export interface TokenSource {
  /** The token to use now; refreshes it first when renewal is due. */
  current(): Promise<string>;
  /**
   * Called after Vault answered 403. Returns true when the token turned out
   * to be dead (revoked or expired behind our back) and was replaced, so the
   * call is worth one retry; false for an ordinary ACL refusal.
   */
  recover(): Promise<boolean>;
  start(): Promise<void>;
  stop(): void;
}

/** A fixed token (VAULT_TOKEN). Nothing to renew or recover. */
export class StaticTokenSource implements TokenSource {
  constructor(private readonly token: string) {}
  async current(): Promise<string> {
    return this.token;
  }
  async recover(): Promise<boolean> {
    return false;
  }
  async start(): Promise<void> {}
  stop(): void {}
}

interface AuthBlock {
  client_token?: unknown;
  accessor?: unknown;
  lease_duration?: unknown;
  renewable?: unknown;
}

function authOf(resp: unknown): Required<{ token: string; accessor: string; lease: number; renewable: boolean }> {
  const auth = (resp as { auth?: AuthBlock } | null)?.auth;
  if (!auth || typeof auth.client_token !== 'string' || auth.client_token === '') {
    throw new Error('response carries no auth block');
  }
  return {
    token: auth.client_token,
    accessor: typeof auth.accessor === 'string' ? auth.accessor : '',
    lease: typeof auth.lease_duration === 'number' ? auth.lease_duration : 0,
    renewable: auth.renewable === true,
  };
}

const RETRY_MS = 5_000;
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * AppRole login with renewal. The token is renewed (`renew-self`) once two
 * thirds of its lease have passed; the source logs in again instead when
 * the token is not renewable, when renewal fails, or when renewal no longer
 * buys at least half of a fresh lease (the token is near its max TTL).
 * Renewal is driven both by a timer and lazily by `current()`, so it also
 * happens on time under an injected clock or after the process was paused.
 */
export class AppRoleTokenSource implements TokenSource {
  private token: string | undefined;
  private accessor = '';
  private renewable = false;
  private loginLeaseMs = 0;
  private renewAtMs = Number.POSITIVE_INFINITY;
  private expiresAtMs = Number.POSITIVE_INFINITY;
  private inflight: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(
    private readonly transport: TokenSourceTransport,
    private readonly creds: { roleId: string; secretId: string; mount: string },
    private readonly clock: Clock,
    private readonly log: VaultLogger,
  ) {}

  async start(): Promise<void> {
    this.running = true;
    await this.refresh(true);
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  async current(): Promise<string> {
    if (!this.token) {
      await this.refresh(true);
    } else if (this.clock.now() >= this.renewAtMs) {
      try {
        await this.refresh(false);
      } catch (err) {
        // A still-valid token is better than failing the caller's request.
        if (this.clock.now() >= this.expiresAtMs) throw err;
      }
    }
    return this.token!;
  }

  async recover(): Promise<boolean> {
    const before = this.token;
    try {
      await this.transport.read('auth/token/lookup-self', before);
      return false;
    } catch (err) {
      if (toVaultError(err, 'token lookup-self').kind !== 'permission_denied') return false;
    }
    this.log.warn({ accessor: this.accessor }, 'vault: own token no longer valid; logging in again');
    if (this.token === before) await this.refresh(true);
    return this.token !== before;
  }

  /** One refresh at a time; concurrent callers share it. */
  private refresh(forceLogin: boolean): Promise<void> {
    this.inflight ??= this.doRefresh(forceLogin).finally(() => {
      this.inflight = undefined;
      this.schedule();
    });
    return this.inflight;
  }

  private async doRefresh(forceLogin: boolean): Promise<void> {
    try {
      if (!forceLogin && this.token && this.renewable) {
        try {
          const renewed = authOf(await this.transport.write('auth/token/renew-self', {}, this.token));
          this.accept(renewed, false);
          if (renewed.renewable && renewed.lease * 1000 >= this.loginLeaseMs / 2) return;
          this.log.info({ accessor: this.accessor, ttlSeconds: renewed.lease }, 'vault: token near its max TTL; logging in again');
        } catch (err) {
          const ve = toVaultError(err, 'token renew-self');
          this.log.warn({ accessor: this.accessor, kind: ve.kind, error: ve.message }, 'vault: token renewal failed; logging in again');
        }
      }
      await this.login();
    } catch (err) {
      // Back off so that every request does not hammer a failing Vault.
      this.renewAtMs = this.clock.now() + RETRY_MS;
      throw toVaultError(err, 'AppRole login');
    }
  }

  private async login(): Promise<void> {
    const resp = await this.transport.write(
      `auth/${this.creds.mount}/login`,
      { role_id: this.creds.roleId, secret_id: this.creds.secretId },
      undefined,
    );
    const auth = authOf(resp);
    this.accept(auth, true);
    this.log.info({ accessor: auth.accessor, ttlSeconds: auth.lease }, 'vault: logged in with AppRole');
  }

  private accept(auth: ReturnType<typeof authOf>, isLogin: boolean): void {
    const now = this.clock.now();
    this.token = auth.token;
    this.accessor = auth.accessor;
    this.renewable = auth.renewable;
    const leaseMs = auth.lease * 1000;
    if (isLogin) this.loginLeaseMs = leaseMs;
    this.expiresAtMs = leaseMs > 0 ? now + leaseMs : Number.POSITIVE_INFINITY;
    this.renewAtMs = leaseMs > 0 ? now + (leaseMs * 2) / 3 : Number.POSITIVE_INFINITY;
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.running || !Number.isFinite(this.renewAtMs)) return;
    const delay = Math.min(MAX_TIMER_MS, Math.max(1_000, this.renewAtMs - this.clock.now()));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.running) return;
      if (this.clock.now() < this.renewAtMs) {
        this.schedule();
        return;
      }
      this.refresh(false).catch((err: unknown) => {
        const ve = toVaultError(err, 'token refresh');
        this.log.warn({ kind: ve.kind, error: ve.message }, 'vault: background token refresh failed; will retry');
      });
    }, delay);
    this.timer.unref();
  }
}
