import { resolve } from 'node:path';
import { formatProblems, loadPolicyDir } from '../../broker/policy/index.ts';
import type { CliIo } from '../io.ts';
import { UsageError, parseCommandArgs } from '../main.ts';

const USAGE = 'jit policy check [DIR]';

export async function policyCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {}, USAGE);
  if (values.help) return (io.out(`usage: ${USAGE}`), 0);
  if (positionals[0] !== 'check' || positionals.length > 2) throw new UsageError(`usage: ${USAGE}`);
  const dir = positionals[1] ?? io.env.JIT_POLICIES ?? './policies';
  const result = loadPolicyDir(resolve(dir));
  if (!result.ok) {
    for (const line of formatProblems(result.problems)) io.err(line);
    io.err(`${result.problems.length} problem(s) in ${dir}`);
    return 1;
  }
  const p = result.policy;
  io.out(`${dir}: OK (${p.files.length} file(s), ${p.agents.size} agent(s), ${p.rules.length} rule(s), ${p.deny.length} deny entr${p.deny.length === 1 ? 'y' : 'ies'})`);
  return 0;
}
