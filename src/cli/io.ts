/** What a CLI command may touch: its environment and two output lines. Injected for tests. */
export interface CliIo {
  env: Record<string, string | undefined>;
  out(line: string): void;
  err(line: string): void;
}
