import { describePolicy, formatProblems, loadPolicyDir } from '../../broker/policy/index.ts';
import type { CliIo } from '../../lib/cli-io.ts';
import { UsageError, parseCommandArgs } from '../../lib/cli-args.ts';

const USAGE = 'jit policy check [DIR]';

export async function policyCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {}, USAGE);
  if (values.help) return (io.out(`usage: ${USAGE}`), 0);
  if (positionals[0] !== 'check' || positionals.length > 2) throw new UsageError(`usage: ${USAGE}`);
  const dir = positionals[1] ?? io.env.JIT_POLICIES ?? './policies';
  const result = loadPolicyDir(dir);
  if (!result.ok) {
    for (const line of formatProblems(result.problems)) io.err(line);
    io.err(`${result.problems.length} problem(s) in ${dir}`);
    return 1;
  }
  for (const line of formatProblems(result.warnings ?? [])) io.err(`warning: ${line}`);
  io.out(`${dir}: OK (${describePolicy(result.policy)})`);
  return 0;
}
