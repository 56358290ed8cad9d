/**
 * Figures for the chaos and fault suites: every suite says what it tried and
 * what happened, as plain lines on stdout (vitest shows them with the test),
 * so a run's numbers can be copied into docs/reliability.md.
 */
export interface FigureLog {
  /** One line of what was tried or seen. */
  line(text: string): void;
  /** `key=value` pairs, kept in order, printed by `print()`. */
  set(key: string, value: string | number | boolean): void;
  get(key: string): string | number | boolean | undefined;
  add(key: string, n?: number): void;
  /** Prints the lines and the tally under a heading; returns the tally line. */
  print(): string;
}

export function figureLog(title: string): FigureLog {
  const lines: string[] = [];
  const tally = new Map<string, string | number | boolean>();
  const started = Date.now();
  return {
    line: (text) => void lines.push(text),
    set: (k, v) => void tally.set(k, v),
    get: (k) => tally.get(k),
    add: (k, n = 1) => void tally.set(k, Number(tally.get(k) ?? 0) + n),
    print() {
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      const t = `[${title}] ${[...tally].map(([k, v]) => `${k}=${v}`).join(' ')} seconds=${seconds}`;
      process.stdout.write(`\n=== ${title} ===\n${lines.map((l) => `  ${l}`).join('\n')}\n${t}\n`);
      return t;
    },
  };
}
