import { defineConfig } from 'vitest/config';

// Opt-in suite: runs the Vault adapter and ACL cases against a real Vault
// when VAULT_ADDR and VAULT_TOKEN are set (see docs/vault.md).
export default defineConfig({
  test: {
    include: ['test/live/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
