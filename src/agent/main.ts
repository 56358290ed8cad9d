import { UsageError } from '../lib/cli-args.ts';
import { EXIT_OUTPUT_CLOSED, OutputClosed, getProcessIo, type CliIo } from '../lib/cli-io.ts';
import { packageVersion } from '../lib/package-version.ts';
import { AGENT_COMMANDS, AGENT_USAGE } from './commands.ts';
import { AGENT_HELP } from './help.ts';

const USAGE = `Usage: jit-agent <command> [options]

The agent side of jit-broker over HTTP (the same commands as the broker's "jit";
their messages name them "jit …").

${AGENT_USAGE}

Environment
  JIT_URL          the broker (default http://127.0.0.1:8787)
  JIT_AGENT_TOKEN  the agent token "jit agent add NAME" printed (required)

Exit codes: 0 done, 1 failed, 2 wrong use or bad configuration, 3 broker unreachable.
"jit-agent <command> --help" for a command's options; "jit-agent --version" the version.`;

/** `jit-agent`: the agent package's entry (packages/agent). Returns the exit code. */
export async function runAgentCli(argv: string[], io: CliIo = getProcessIo()): Promise<number> {
  const [first, ...rest] = argv;
  if (first === '--help' || first === '-h' || first === 'help') {
    if (rest[0] && !rest[0].startsWith('-')) return runAgentCli([rest[0], '--help'], io);
    io.out(USAGE);
    return 0;
  }
  if (first === '--version' || first === '-V') {
    io.out(packageVersion());
    return 0;
  }
  const load = first !== undefined && Object.hasOwn(AGENT_COMMANDS, first) ? AGENT_COMMANDS[first] : undefined;
  if (!load) {
    io.err(`jit-agent: ${first ? `unknown command "${first}"` : 'missing command'}; "jit-agent --help" lists the commands (${Object.keys(AGENT_COMMANDS).join(', ')})`);
    return 2;
  }
  if ((rest.includes('--help') || rest.includes('-h')) && AGENT_HELP[first!]) {
    io.out(AGENT_HELP[first!]!);
    return 0;
  }
  try {
    return await (await load())(rest, io);
  } catch (err) {
    if (err instanceof OutputClosed) return EXIT_OUTPUT_CLOSED;
    if (err instanceof UsageError) {
      const lines = err.message.split('\n').map((l) => l.trim()).filter(Boolean);
      const problems = lines.filter((l) => !/^usage:/i.test(l));
      io.err(`jit-agent ${first}: ${(problems.length > 0 ? problems : lines.slice(0, 1)).join('; ')} (see "jit-agent ${first} --help")`);
      return 2;
    }
    io.err(`jit-agent ${first}: ${(err as Error).message}`);
    return 1;
  }
}
