import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatProblems, loadPolicyDir } from '../../../src/broker/policy/load.ts';
import type { PolicyProblem, PolicySet } from '../../../src/broker/policy/types.ts';

const created: string[] = [];

/** A fresh temporary directory holding `files` (name → content). */
export function policyDir(files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'jit-policy-'));
  created.push(dir);
  writeFiles(dir, files);
  return dir;
}

export function writeFiles(dir: string, files: Record<string, string>): void {
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
}

/** Removes every directory made by `policyDir`; call from afterAll. */
export function removePolicyDirs(): void {
  for (const dir of created.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** Loads one YAML text as the only policy file; throws with the problems when it is not valid. */
export function policyFrom(yaml: string): PolicySet {
  const result = loadPolicyDir(policyDir({ 'policy.yaml': yaml }));
  if (!result.ok) throw new Error(formatProblems(result.problems).join('\n'));
  return result.policy;
}

/** The problems of loading `files`; throws when they load cleanly. */
export function problemsOf(files: Record<string, string>): { dir: string; problems: PolicyProblem[] } {
  const dir = policyDir(files);
  const result = loadPolicyDir(dir);
  if (result.ok) throw new Error('expected problems, but the policy loaded');
  return { dir, problems: result.problems };
}
