import type { Config } from '../config/config.ts';
import { createVaultClient, type VaultClientOptions } from './node-vault-client.ts';
import type { Logger } from '../lib/logger.ts';
import type { VaultClient } from './types.ts';

/** The broker's Vault client for a configured Vault (token or AppRole). */
export function vaultClientFromConfig(vault: NonNullable<Config['vault']>, opts: VaultClientOptions = {}): VaultClient {
  const auth = vault.auth;
  return createVaultClient(
    auth.kind === 'token'
      ? { endpoint: vault.addr, token: auth.token }
      : { endpoint: vault.addr, roleId: auth.roleId, secretId: auth.secretId, approleMount: auth.mount },
    opts,
  );
}

/** Logs in at start; a Vault that is down then is logged, not fatal (requests get 503 until it is back). */
export async function startVaultClient(vault: VaultClient, log: Pick<Logger, 'error'>): Promise<void> {
  try {
    await vault.start();
  } catch (err) {
    log.error({ err }, 'could not authenticate to Vault at start; requests will get 503 until it is reachable');
  }
}
