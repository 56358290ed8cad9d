import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LineCounter, isMap, isScalar, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { compilePolicy } from './evaluate.ts';
import { AGENT_NAME_MESSAGE, AGENT_NAME_PATTERN, RULE_NAME_PATTERN, describeValue, policyFileSchema, type PolicyFile } from './schema.ts';
import type {
  AgentPolicy,
  Capability,
  DenyEntry,
  LoadResult,
  PolicyProblem,
  PolicySet,
  Rule,
  WebhookTarget,
} from './types.ts';

/**
 * Policy files larger than this are refused: a guard against pointing the
 * broker at the wrong file, with room for generated policies (10,000 rules
 * take about 1.5 MB).
 */
export const MAX_POLICY_FILE_BYTES = 16 * 1024 * 1024;

const POLICY_FILE = /\.ya?ml$/;

type Path = ReadonlyArray<PropertyKey>;

interface ParsedFile {
  file: string;
  raw: unknown;
  doc: Document;
  lines: LineCounter;
  data?: PolicyFile;
}

/**
 * Reads every `*.yaml` / `*.yml` file directly in `dir` (sorted by name;
 * dotfiles and subdirectories are ignored), parses and validates them, and
 * merges them into one PolicySet. On failure returns every problem found,
 * each naming the file, the rule (or `agents.NAME`, `deny[N]`, `rules[N]`)
 * and the field. A missing or empty directory is a problem too.
 */
export function loadPolicyDir(dir: string): LoadResult {
  const problems: PolicyProblem[] = [];
  const warnings: PolicyProblem[] = [];

  const names = listPolicyFiles(dir, problems);
  if (!names) return { ok: false, problems };

  const parsed: ParsedFile[] = [];
  for (const name of names) {
    const file = join(dir, name);
    const p = parseFile(file, problems, warnings);
    if (p) parsed.push(p);
  }

  checkAcrossFiles(parsed, problems);
  if (problems.length > 0) return { ok: false, problems };

  const policy = buildPolicySet(
    names.map((n) => join(dir, n)),
    parsed,
  );
  warnings.push(...unknownAgentWarnings(parsed, policy), ...sessionPatternWarnings(parsed));
  if (policy.rules.length === 0) {
    warnings.push({ file: dir, message: 'no rules: every request will be rejected' });
  }
  compilePolicy(policy);
  return { ok: true, policy, warnings };
}

function listPolicyFiles(dir: string, problems: PolicyProblem[]): string[] | undefined {
  try {
    if (!statSync(dir).isDirectory()) {
      problems.push({ file: dir, message: 'not a directory (the policy location must be a directory of *.yaml files)' });
      return undefined;
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    problems.push({
      file: dir,
      message: code === 'ENOENT' ? 'policy directory does not exist' : `cannot read policy directory: ${errorText(err)}`,
    });
    return undefined;
  }
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch (err) {
    problems.push({ file: dir, message: `cannot read policy directory: ${errorText(err)}` });
    return undefined;
  }
  const names: string[] = [];
  for (const name of entries.sort()) {
    // Dotfiles include editor leftovers and Kubernetes ConfigMap `..data` links.
    if (!POLICY_FILE.test(name) || name.startsWith('.')) continue;
    try {
      if (statSync(join(dir, name)).isFile()) names.push(name);
    } catch (err) {
      problems.push({ file: join(dir, name), message: `cannot read file: ${errorText(err)}` });
    }
  }
  if (names.length === 0 && problems.length === 0) {
    problems.push({ file: dir, message: 'no policy files (*.yaml or *.yml) in this directory' });
  }
  return problems.length > 0 ? undefined : names;
}

function parseFile(file: string, problems: PolicyProblem[], warnings: PolicyProblem[]): ParsedFile | undefined {
  let text: string;
  try {
    if (statSync(file).size > MAX_POLICY_FILE_BYTES) {
      problems.push({ file, message: `file is larger than ${MAX_POLICY_FILE_BYTES} bytes` });
      return undefined;
    }
    text = readFileSync(file, 'utf8');
  } catch (err) {
    problems.push({ file, message: `cannot read file: ${errorText(err)}` });
    return undefined;
  }

  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      const pos = e.linePos?.[0];
      const msg = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
      problems.push({
        file,
        kind: 'yaml_syntax',
        message: pos ? `YAML syntax error at line ${pos.line}, column ${pos.col}: ${msg}` : `YAML syntax error: ${msg}`,
        ...(pos ? { line: pos.line } : {}),
      });
    }
    return undefined;
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    problems.push({ file, message: `YAML error: ${errorText(err)}` });
    return undefined;
  }
  if (raw === null || raw === undefined) {
    warnings.push({ file, message: 'empty policy file' });
    return undefined;
  }

  const result = policyFileSchema.safeParse(raw, { reportInput: true });
  const parsed: ParsedFile = { file, raw, doc, lines };
  const found = result.success ? [] : result.error.issues.flatMap((issue) => issueToProblems(issue, parsed));
  found.push(...droppedAgentKeys(parsed, result.success ? result.data : undefined, result.success ? [] : result.error.issues));
  if (found.length === 0) {
    parsed.data = result.data;
  } else {
    found.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
    problems.push(...found);
  }
  return parsed;
}

/**
 * Agent keys of the file that zod left out without an issue: its `record()`
 * skips a `__proto__` key (assigning it would set the prototype), so such an
 * agent would vanish silently. Reported like any other invalid agent name.
 */
function droppedAgentKeys(p: ParsedFile, data: PolicyFile | undefined, issues: readonly z.core.$ZodIssue[]): PolicyProblem[] {
  const agents = valueAt(p.raw, ['agents']);
  if (!agents || typeof agents !== 'object' || Array.isArray(agents)) return [];
  const reported = new Set(issues.filter((i) => i.path[0] === 'agents' && i.path.length > 1).map((i) => String(i.path[1])));
  return Object.keys(agents)
    .filter((key) => !reported.has(key) && !(data?.agents && Object.hasOwn(data.agents, key)) && (data !== undefined || !AGENT_NAME_PATTERN.test(key)))
    .map((key) => problemAt(p, ['agents', key], AGENT_NAME_MESSAGE, true));
}

/** Turns one zod issue into problems (an unknown-keys issue becomes one per key). */
function issueToProblems(issue: z.core.$ZodIssue, p: ParsedFile): PolicyProblem[] {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => problemAt(p, [...issue.path, key], issue.message, true));
  }
  if (issue.code === 'invalid_key') {
    return [problemAt(p, issue.path, issue.issues[0]?.message ?? issue.message, true)];
  }
  let message = issue.message;
  if (isMissingKey(p.raw, issue.path)) {
    message = 'missing required field';
  } else if (issue.code === 'invalid_type' && message.startsWith('Invalid input:')) {
    // zod's generic wording, for the few places without a message of their own.
    message = `expected ${TYPE_NAMES[issue.expected] ?? issue.expected}, got ${describeValue(valueAt(p.raw, issue.path))}`;
  }
  return [problemAt(p, issue.path, message)];
}

const TYPE_NAMES: Record<string, string> = { object: 'a mapping', array: 'a list', string: 'a string', number: 'a number' };

/** The issue is about a key its (mapping) parent does not have. */
function isMissingKey(raw: unknown, path: Path): boolean {
  if (path.length === 0) return false;
  const parent = valueAt(raw, path.slice(0, -1));
  return (
    parent !== null &&
    typeof parent === 'object' &&
    !Array.isArray(parent) &&
    !Object.prototype.hasOwnProperty.call(parent, path[path.length - 1]!)
  );
}

/** `atKey`: point the line at the last key of `path` rather than at its value. */
function problemAt(p: ParsedFile, path: Path, message: string, atKey = false): PolicyProblem {
  const { rule, fieldPath } = locate(p.raw, path);
  const field = formatField(fieldPath);
  const line = lineOf(p, path, atKey);
  return {
    file: p.file,
    ...(rule !== undefined ? { rule } : {}),
    ...(field ? { field } : {}),
    message,
    ...(line !== undefined ? { line } : {}),
  };
}

/** Splits a path into the rule/agent/deny entry it belongs to and the field inside it. */
function locate(raw: unknown, path: Path): { rule?: string; fieldPath: Path } {
  const [head, index, ...rest] = path;
  if (head === 'rules' && typeof index === 'number') return { rule: ruleLabel(raw, index), fieldPath: rest };
  if (head === 'deny' && typeof index === 'number') return { rule: `deny[${index}]`, fieldPath: rest };
  if (head === 'agents' && typeof index === 'string') return { rule: `agents.${index}`, fieldPath: rest };
  return { fieldPath: path };
}

function ruleLabel(raw: unknown, index: number): string {
  const name = valueAt(raw, ['rules', index, 'name']);
  return typeof name === 'string' && RULE_NAME_PATTERN.test(name) ? name : `rules[${index}]`;
}

/** `capabilities[2]`, `webhook.url`. */
function formatField(path: Path): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out ? `.${String(seg)}` : String(seg);
  }
  return out;
}

function valueAt(raw: unknown, path: Path): unknown {
  let v = raw;
  for (const seg of path) {
    if (v === null || typeof v !== 'object') return undefined;
    if (!Object.prototype.hasOwnProperty.call(v, seg)) return undefined;
    v = (v as Record<PropertyKey, unknown>)[seg];
  }
  return v;
}

/** Line of the YAML node at `path` (or of the closest ancestor that exists). */
function lineOf(p: ParsedFile, path: Path, atKey: boolean): number | undefined {
  if (atKey && path.length > 0) {
    const key = path[path.length - 1];
    const map = p.doc.getIn(path.slice(0, -1) as unknown[], true);
    if (isMap(map)) {
      const pair = map.items.find((it) => isScalar(it.key) && it.key.value === key);
      const range = pair && isScalar(pair.key) ? pair.key.range : undefined;
      if (range) return p.lines.linePos(range[0]).line;
    }
  }
  for (let n = path.length; n >= 0; n--) {
    const node = p.doc.getIn(path.slice(0, n) as unknown[], true) as { range?: [number, number, number] } | undefined;
    if (node && typeof node === 'object' && node.range) return p.lines.linePos(node.range[0]).line;
  }
  return undefined;
}

/** Rule names unique across files; each agent defined in one file only. */
function checkAcrossFiles(parsed: ParsedFile[], problems: PolicyProblem[]): void {
  const ruleNames = new Map<string, string>();
  const agents = new Map<string, string>();
  for (const p of parsed) {
    const rules = valueAt(p.raw, ['rules']);
    if (Array.isArray(rules)) {
      rules.forEach((r, i) => {
        const name = valueAt(r, ['name']);
        if (typeof name !== 'string' || !RULE_NAME_PATTERN.test(name)) return;
        const first = ruleNames.get(name);
        if (first) {
          problems.push(problemAt(p, ['rules', i, 'name'], `duplicate rule name (first defined at ${first})`));
        } else {
          ruleNames.set(name, `${p.file} rules[${i}]`);
        }
      });
    }
    const agentMap = valueAt(p.raw, ['agents']);
    if (agentMap && typeof agentMap === 'object' && !Array.isArray(agentMap)) {
      for (const name of Object.keys(agentMap)) {
        const first = agents.get(name);
        if (first) {
          problems.push(problemAt(p, ['agents', name], `agent "${name}" is already defined in ${first}`, true));
        } else {
          agents.set(name, p.file);
        }
      }
    }
  }
}

function buildPolicySet(files: string[], parsed: ParsedFile[]): PolicySet {
  const agents = new Map<string, AgentPolicy>();
  const rules: Rule[] = [];
  const deny: DenyEntry[] = [];
  for (const { file, data } of parsed) {
    if (!data) continue;
    for (const [name, a] of Object.entries(data.agents ?? {})) {
      const agent: AgentPolicy = { name, file, sessions: [...a.sessions] };
      if (a.default_session !== undefined) agent.defaultSession = a.default_session;
      const webhook = webhookTarget(a);
      if (webhook) agent.webhook = webhook;
      agents.set(name, deepFreeze(agent));
    }
    for (const r of data.rules ?? []) {
      const base = { name: r.name, file, agents: [...new Set(r.agents)], tier: r.tier, maxTtlSeconds: r.max_ttl };
      rules.push(
        r.resource === 'vault'
          ? { ...base, resource: 'vault', paths: [...new Set(r.paths)], capabilities: [...new Set<Capability>(r.capabilities)] }
          : { ...base, resource: 'gate', repos: [...new Set(r.repos)], refs: [...new Set(r.refs)] },
      );
    }
    for (const d of data.deny ?? []) {
      deny.push({ file, paths: d.paths ?? [], repos: d.repos ?? [], refs: d.refs ?? [] });
    }
  }
  return { agents, rules: deepFreeze(rules), deny: deepFreeze(deny), files: deepFreeze(files) };
}

function webhookTarget(a: NonNullable<PolicyFile['agents']>[string]): WebhookTarget | undefined {
  const w = a.webhook;
  if (w === undefined) return undefined;
  if (w !== 'openclaw' && w.format === 'standard') return { kind: 'standard', url: w.url };
  const t: WebhookTarget = { kind: 'openclaw' };
  if (w !== 'openclaw') t.url = w.url;
  if (a.agent_id !== undefined) t.agentId = a.agent_id;
  if (a.session_mode !== undefined) t.sessionMode = a.session_mode;
  return t;
}

/**
 * Characters after which a `*` in a `sessions` pattern is safe: ":" and "/".
 * Neither can appear in an agent name (letters, digits, ".", "_", "-"), so a
 * pattern like `hook:jit:dev:*` cannot reach into another agent's keys, while
 * `hook:jit:dev*` also matches `hook:jit:devops:…` (and `hook:jit:dev-*`
 * matches `hook:jit:dev-ops:…`).
 */
export const SESSION_SEPARATORS = ':/';

/**
 * A `sessions` pattern whose `*` does not follow a separator lets the agent
 * target sessions that merely share a prefix with its own, another agent's
 * included. Valid (operators' own patterns keep working), but worth a warning.
 */
function sessionPatternWarnings(parsed: ParsedFile[]): PolicyProblem[] {
  const out: PolicyProblem[] = [];
  for (const p of parsed) {
    for (const [name, agent] of Object.entries(p.data?.agents ?? {})) {
      agent.sessions.forEach((pattern, i) => {
        const star = [...pattern].findIndex((c, j) => c === '*' && (j === 0 || !SESSION_SEPARATORS.includes(pattern[j - 1]!)));
        if (star === -1) return;
        const fixed = pattern.slice(0, star);
        const example = star === 0 ? 'any session key at all' : `"${fixed}…" keys that are not this agent's, such as "${fixed}x:main"`;
        const better = star === 0 ? 'name the prefix, e.g. "hook:jit:NAME:*"' : `end the part before "*" with ":" (e.g. "${fixed.replace(/[-_.]+$/, '')}:*")`;
        out.push(problemAt(p, ['agents', name, 'sessions', i], `session pattern "${pattern}" has a "*" that does not follow ":" or "/", so it also matches ${example}; ${better}`));
      });
    }
  }
  return out;
}

/** A rule naming an agent (not a glob) that no file defines is probably a typo. */
function unknownAgentWarnings(parsed: ParsedFile[], policy: PolicySet): PolicyProblem[] {
  const out: PolicyProblem[] = [];
  for (const p of parsed) {
    p.data?.rules?.forEach((r, i) => {
      r.agents.forEach((a, j) => {
        if (!a.includes('*') && !policy.agents.has(a)) {
          out.push(problemAt(p, ['rules', i, 'agents', j], `agent "${a}" is not defined in any policy file's agents section`));
        }
      });
    });
  }
  return out;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * One line per problem, e.g.
 * `policies/homelab.yaml: rule "homelab-write": capabilities[2]: "sudo" is never issued (line 23)`.
 */
export function formatProblems(problems: readonly PolicyProblem[]): string[] {
  return problems.map((p) => {
    let out = `${p.file}: `;
    if (p.rule !== undefined) out += /^(rules|deny)\[\d+\]$|^agents\./.test(p.rule) ? `${p.rule}: ` : `rule "${p.rule}": `;
    if (p.field) out += `${p.field}: `;
    out += p.message;
    if (p.line !== undefined && p.kind !== 'yaml_syntax') out += ` (line ${p.line})`;
    return out;
  });
}

/** A one-line summary of a loaded policy, e.g. `1 file, 2 agents, 6 rules, 1 deny entry`. */
export function describePolicy(policy: PolicySet): string {
  const n = (count: number, one: string, many: string) => `${count} ${count === 1 ? one : many}`;
  return [
    n(policy.files.length, 'file', 'files'),
    n(policy.agents.size, 'agent', 'agents'),
    n(policy.rules.length, 'rule', 'rules'),
    n(policy.deny.length, 'deny entry', 'deny entries'),
  ].join(', ');
}
