/** Capabilities an agent may ask for. `sudo`, `deny` and `root` are never issued. */
export const GRANTABLE_CAPABILITIES = ['create', 'read', 'update', 'patch', 'delete', 'list'] as const;
export type Capability = (typeof GRANTABLE_CAPABILITIES)[number];
export const FORBIDDEN_CAPABILITIES = ['sudo', 'deny', 'root'] as const;
