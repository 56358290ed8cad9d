/**
 * Policy files for tests that need one agent and a rule or two: the YAML a
 * test would otherwise restate (src/broker/policy/ reads it). Each test
 * still names what it depends on (sessions, webhook, rule name, tier).
 */
export interface TestAgent {
  name: string;
  /** A session glob, e.g. "hook:jit:moltbot*". */
  sessions: string;
  defaultSession: string;
  /** The agent's `webhook:` value as YAML (a name like `openclaw`, or `{ url: "…", format: standard }`). */
  webhook?: string;
}

interface RuleBase {
  name: string;
  tier: 1 | 2 | 3;
  maxTtl: string;
}
export type TestRule =
  | (RuleBase & { resource: 'vault'; paths: string[]; capabilities: string[] })
  | (RuleBase & { resource: 'gate'; repos: string[]; refs: string[] });

/** Vault: read and update anything under homelab/data/, tier 2, at most 30 minutes. */
export const HOMELAB_WRITE: TestRule = { name: 'homelab-write', resource: 'vault', paths: ['homelab/data/*'], capabilities: ['read', 'update'], tier: 2, maxTtl: '30m' };

/** Gate: push agent/* branches of homelab/* repositories, tier 1 (issued at once), at most an hour. */
export const gateAgentBranches = (name: string): TestRule => ({ name, resource: 'gate', repos: ['homelab/*'], refs: ['refs/heads/agent/*'], tier: 1, maxTtl: '1h' });

/** The policy YAML: one agent, the rules (each for that agent). */
export function onePolicy(agent: TestAgent, rules: TestRule[]): string {
  const list = (xs: string[]) => JSON.stringify(xs).replaceAll(',', ', ');
  const lines = [
    'agents:',
    `  ${agent.name}:`,
    `    sessions: [${JSON.stringify(agent.sessions)}]`,
    `    default_session: ${JSON.stringify(agent.defaultSession)}`,
    ...(agent.webhook === undefined ? [] : [`    webhook: ${agent.webhook}`]),
    'rules:',
  ];
  for (const r of rules) {
    lines.push(`  - name: ${r.name}`, `    agents: [${agent.name}]`, `    resource: ${r.resource}`);
    if (r.resource === 'vault') lines.push(`    paths: ${list(r.paths)}`, `    capabilities: [${r.capabilities.join(', ')}]`);
    else lines.push(`    repos: ${list(r.repos)}`, `    refs: ${list(r.refs)}`);
    lines.push(`    tier: ${r.tier}`, `    max_ttl: ${r.maxTtl}`);
  }
  return `${lines.join('\n')}\n`;
}
