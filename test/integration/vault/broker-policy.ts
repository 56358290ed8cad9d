import { readFileSync } from 'node:fs';

/**
 * The broker's production Vault policy exactly as docs/vault.md tells
 * operators to install it, so tests prove the documented policy works.
 */
export function documentedBrokerPolicy(): string {
  const doc = readFileSync(new URL('../../../docs/vault.md', import.meta.url), 'utf8');
  const m = /<!-- broker-policy:start -->\s*```hcl\n([\s\S]*?)```\s*<!-- broker-policy:end -->/.exec(doc);
  if (!m) throw new Error('docs/vault.md has no broker-policy block');
  return m[1]!;
}
