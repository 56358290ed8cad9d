/*
 * The rows the broker works with. They are defined by the storage
 * interface (src/storage/rows.ts, engine-neutral) and re-exported here for
 * the broker's modules; every statement lives behind src/storage/.
 */
export type { CredentialRow, CredentialState, RequestRow, RequestStatus, VoteRow } from '../storage/rows.ts';

export interface VaultScope {
  vault_paths: { path: string; capabilities: string[] }[];
}
export interface GateScope {
  repo: string;
  refs: string[];
}
