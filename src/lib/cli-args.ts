import { parseArgs } from 'node:util';

/**
 * A command's argument parsing and its wrong-use error (exit 2). Kept apart
 * from main.ts, with nothing but node:util, so a command can use them
 * without importing the command table.
 */
export class UsageError extends Error {}

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
