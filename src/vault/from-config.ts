import type { Config } from '../config/config.ts';
import { createVaultClient, type VaultClientOptions } from './node-vault-client.ts';
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
