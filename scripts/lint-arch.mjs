#!/usr/bin/env node
/**
 * The architecture self-check (docs/architecture.md, "Allowed arrows"):
 *   1. the import rules of .dependency-cruiser.cjs over src/ (cycles, broker → adapters,
 *      adapters → each other, better-sqlite3 outside src/storage/);
 *   2. no SQL outside src/storage/: SQL keywords in the string and template literals of
 *      src/ (comments and prose are not looked at: the files are parsed with TypeScript),
 *      string literals handed to a `.prepare(` or `.pragma(` call, and any .sql file.
 *
 * Usage: node scripts/lint-arch.mjs [--root DIR]   (DIR holds src/; default the repository)
 * Exit 0 when clean, 1 with one line per violation (file:line, rule, what to do).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cruise } from 'dependency-cruiser';
import ts from 'typescript';

const REPO = resolve(fileURLToPath(new URL('..', import.meta.url)));
const require = createRequire(import.meta.url);

/** Where SQL may live. */
export const STORAGE_DIR = 'src/storage/';

/**
 * A statement, not a word: each alternative needs the keyword plus what makes it a statement
 * (SELECT … FROM, UPDATE t SET, INSERT INTO, …), upper case as the code base writes SQL, so
 * "select a file" or "update the row" in a message is not SQL. The last alternatives catch the
 * fragments a query is built from (`'status = ?'`, `'WHERE state = ?'`): a column compared with
 * a bind parameter.
 */
export const SQL_PATTERN =
  /\b(?:SELECT\b[\s\S]*?\bFROM\b|SELECT\s+(?:\d|1\b|COUNT|MAX|MIN|EXISTS|changes\(\))|INSERT\s+(?:OR\s+\w+\s+)?INTO\b|REPLACE\s+INTO\b|UPDATE\s+\w+\s+SET\b|DELETE\s+FROM\b|(?:CREATE|DROP)\s+(?:UNIQUE\s+)?(?:TEMP\s+)?(?:TABLE|INDEX|VIEW|TRIGGER)\b|ALTER\s+TABLE\b|PRAGMA\b|BEGIN\s+(?:IMMEDIATE|EXCLUSIVE|DEFERRED|TRANSACTION)\b|WHERE\s+\w+(?:\.\w+)?\s*(?:=|<|>|IN\b|IS\b)|\b\w+\s*(?:=|!=|<>|<=|>=)\s*(?:\?|@\w+)(?!\w))/;

const SQL_ADVICE = `SQL lives only in ${STORAGE_DIR}: move the statement (or file) behind the storage interface and call that.`;

/** Calls whose first argument is SQL (or a pragma) whatever it says. */
const SQL_CALLS = new Set(['prepare', 'pragma']);

const SCRIPT_EXT = /\.(?:ts|mts|cts|js|mjs|cjs)$/;

function* walk(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(full);
    else yield full;
  }
}

const posix = (p) => p.split(sep).join('/');

/** The text of a literal node, or undefined when the node is not one. */
function literalText(node) {
  if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) return node.text;
  if (ts.isTemplateExpression(node)) return [node.head.text, ...node.templateSpans.map((s) => s.literal.text)].join(' ${…} ');
  return undefined;
}

/** SQL in one script file: [{ line, text }]. */
export function findSql(fileName, source) {
  const sf = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, true);
  const found = [];
  const report = (node, text) => {
    const { line } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
    found.push({ line: line + 1, text: text.replace(/\s+/g, ' ').trim().slice(0, 80) });
  };
  const visit = (node) => {
    if (ts.isTemplateExpression(node) || ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) {
      const text = literalText(node);
      const parent = node.parent;
      const sqlCall =
        parent && ts.isCallExpression(parent) && parent.arguments[0] === node && ts.isPropertyAccessExpression(parent.expression) &&
        SQL_CALLS.has(parent.expression.name.text);
      const isImportPath = parent && (ts.isImportDeclaration(parent) || ts.isExportDeclaration(parent) || ts.isExternalModuleReference(parent));
      if (!isImportPath && (sqlCall || SQL_PATTERN.test(text))) report(node, text);
      if (ts.isTemplateExpression(node)) node.templateSpans.forEach((s) => visit(s.expression));
      return;
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

/** SQL outside the storage folder: [{ file, line, rule, message }]. */
export function checkSql(root) {
  const violations = [];
  const src = join(root, 'src');
  for (const full of walk(src)) {
    const file = posix(relative(root, full));
    if (file.startsWith(STORAGE_DIR)) continue;
    if (file.endsWith('.sql')) {
      violations.push({ file, line: 1, rule: 'sql-only-in-storage', message: 'an SQL file', advice: SQL_ADVICE });
    } else if (SCRIPT_EXT.test(file) && !file.endsWith('.d.ts')) {
      for (const { line, text } of findSql(full, readFileSync(full, 'utf8'))) {
        violations.push({ file, line, rule: 'sql-only-in-storage', message: `SQL: "${text}"`, advice: SQL_ADVICE });
      }
    }
  }
  return violations;
}

/** The import rules of .dependency-cruiser.cjs over `<root>/src`: [{ file, line, rule, message }]. */
export async function checkImports(root, configPath = join(REPO, '.dependency-cruiser.cjs')) {
  const config = require(configPath);
  const result = await cruise(['src'], { ...config.options, baseDir: root, validate: true, ruleSet: { forbidden: config.forbidden } });
  const output = result.output;
  const comments = new Map(config.forbidden.map((r) => [r.name, r.comment]));
  return output.summary.violations.map((v) => {
    const cycle = v.cycle?.map((c) => c.name ?? c);
    const to = packageName(v.to) ?? v.to;
    const what = cycle?.length ? `cycle ${[v.from, ...cycle].join(' → ')}` : `imports ${to}`;
    return { file: v.from, line: importLine(root, v.from, cycle?.[0] ?? to), rule: v.rule.name, message: what, advice: comments.get(v.rule.name) };
  });
}

/** `better-sqlite3` for a resolved path inside node_modules (or @types), else undefined. */
function packageName(resolved) {
  const m = /(?:^|\/)node_modules\/(?:@types\/)?((?:@[^/]+\/)?[^/]+)/.exec(resolved);
  return m?.[1];
}

/** The line of `from`'s import of `to` (dependency-cruiser names modules, not lines). */
function importLine(root, from, to) {
  let text;
  try {
    text = readFileSync(join(root, from), 'utf8');
  } catch {
    return 1;
  }
  const base = to.split('/').pop().replace(/\.(d\.)?[mc]?[jt]s$/, '');
  const lines = text.split('\n');
  const at = lines.findIndex((l) => /\b(import|export)\b|require\(/.test(l) && (l.includes(`/${base}.`) || l.includes(`'${base}'`)));
  return at < 0 ? 1 : at + 1;
}

export async function checkArchitecture(root = REPO) {
  const violations = [...(await checkImports(root)), ...checkSql(root)];
  return violations.sort((a, b) => a.rule.localeCompare(b.rule) || a.file.localeCompare(b.file) || a.line - b.line);
}

/** One line per violation, then what to do, once per rule. */
export function formatViolations(violations) {
  const lines = violations.map((v) => `${v.file}:${v.line}  ${v.rule}  ${v.message}`);
  const advice = new Map(violations.map((v) => [v.rule, v.advice]));
  return [...lines, '', ...[...advice].map(([rule, text]) => `${rule}: ${text ?? ''}`)].join('\n');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const at = process.argv.indexOf('--root');
  const root = at > 0 ? resolve(process.argv[at + 1] ?? '.') : REPO;
  const violations = await checkArchitecture(root);
  if (violations.length === 0) {
    console.log(`lint:arch: ${posix(relative(process.cwd(), root) || '.')}/src follows the allowed arrows (docs/architecture.md)`);
  } else {
    const rules = [...new Set(violations.map((v) => v.rule))];
    console.error(formatViolations(violations));
    console.error(`\nlint:arch: ${violations.length} violation(s) of ${rules.join(', ')} (docs/architecture.md, "Allowed arrows")`);
    process.exitCode = 1;
  }
}
