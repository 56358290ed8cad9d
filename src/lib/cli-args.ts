import { parseArgs } from 'node:util';

/**
 * A command's argument parsing and its wrong-use error (exit 2). Kept apart
 * from main.ts, with nothing but node:util, so a command can use them
 * without importing the command table.
 */
export class UsageError extends Error {}

/**
 * Wrong use in one line: the problem and where the usage is, for `command`
 * as typed ("jit approve", "jit-agent status"). Commands put "usage: …"
 * lines under the problem; a usage block may run over several lines (a
 * command with subcommands, or options listed below it), so everything from
 * "usage:" on stays out, unless there is no other text (then the usage line
 * is the message).
 */
export function usageErrorLine(command: string, err: UsageError): string {
  const lines = err.message.split('\n').map((l) => l.trim()).filter(Boolean);
  const usageAt = lines.findIndex((l) => /^usage:/i.test(l));
  const problems = usageAt === -1 ? lines : lines.slice(0, usageAt);
  return `${command}: ${(problems.length > 0 ? problems : lines.slice(0, 1)).join('; ')} (see "${command} --help")`;
}

/** parseArgs with usage errors turned into UsageError. */
export function parseCommandArgs(
  args: string[],
  options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>,
  usage: string,
): { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] } {
  try {
    return parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true }) as {
      values: Record<string, string | boolean | string[] | undefined>;
      positionals: string[];
    };
  } catch (err) {
    throw new UsageError(`${parseArgsProblem(err as Error & { code?: string })}\nusage: ${usage}`);
  }
}

/** node:util parseArgs errors, short: its unknown-option message is three sentences long. */
function parseArgsProblem(err: Error & { code?: string }): string {
  const option = /--[A-Za-z][\w-]*/.exec(err.message)?.[0] ?? /'(-[A-Za-z])\b/.exec(err.message)?.[1];
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option) return `unknown option "${option}"`;
  if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && option) {
    // Node's text, not ours: one code covers both cases, and only its message tells them apart.
    return /argument missing/.test(err.message) ? `${option} needs a value` : `${option} takes no value`;
  }
  return err.message;
}
