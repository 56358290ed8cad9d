/**
 * The arrows allowed between the folders of src/ (docs/architecture.md, "Allowed arrows").
 * Checked by `npm run lint:arch` (scripts/lint-arch.mjs) and by test/arch/arch.test.ts in `npm test`.
 * Paths are relative to the checked root, so the same rules run on test/arch/fixtures/.
 *
 * Type-only imports count (tsPreCompilationDeps): a type import is still an arrow a reader must follow,
 * and a cycle through types is a cycle in the design.
 */

/** The adapters: each calls the broker, none calls another. console/ is the operator console to come. */
const OTHER_ADAPTERS = 'telegram|webhooks|http|console|mcp';
const ADAPTERS = `${OTHER_ADAPTERS}|cli`;

/** The composition root's files: every file directly in src/ (main.ts, create-deps.ts, …). */
const COMPOSITION_FILES = '^src/[^/]+$';

/**
 * The lower layers: storage, Vault client, configuration, helpers, wire schemas and metrics. They import each other
 * (config → lib and storage, vault → config and lib, metrics → storage and vault, storage → lib and wire, wire → lib)
 * and never the broker, an adapter or the composition root. keys/ has its own stricter rule below.
 */
const LOWER_LAYERS = 'storage|vault|config|lib|wire|metrics';

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'An import cycle in src/. Move what both sides share into a small module of its own.',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'broker-imports-no-adapter',
      severity: 'error',
      comment:
        'src/broker is the core: adapters (HTTP, Telegram, CLI, webhooks, MCP, console) and the composition root ' +
        '(the files directly in src/: create-deps.ts, main.ts, …) call it, never the other way. ' +
        'Pass what the broker needs through BrokerDeps; a type both sides need belongs in src/broker.',
      from: { path: '^src/broker/' },
      to: { path: [`^src/(${ADAPTERS}|agent)/`, COMPOSITION_FILES] },
    },
    {
      name: 'adapters-do-not-import-each-other',
      severity: 'error',
      comment:
        'Adapters call the broker, not each other. Shared pieces go to src/broker (verbs, errors), src/keys, ' +
        'src/lib, or src/client (the agent-side library that cli/ and mcp/ share); the composition root ' +
        '(create-deps.ts, main.ts) wires adapters together.',
      from: { path: `^src/(${OTHER_ADAPTERS})/` },
      to: { path: `^src/(${ADAPTERS})/`, pathNot: '^src/$1/' },
    },
    {
      name: 'cli-imports-no-other-adapter',
      severity: 'error',
      comment:
        'The same rule for src/cli, with one exception, the webhook outbox module: `jit webhooks list|retry` and ' +
        '`jit requests show` are the operator tools over the outbox, and cli/context.ts (the composition root of the ' +
        'offline deciding commands, as create-deps.ts is of the service) wires the outbox decision sink. Nothing ' +
        'else of webhooks/, and nothing of mcp/, http/, telegram/ or console/: the agent-side commands (`jit mcp` ' +
        'included) are src/agent/, which cli/ delegates to.',
      from: { path: '^src/cli/' },
      to: { path: `^src/(${OTHER_ADAPTERS})/`, pathNot: ['^src/webhooks/outbox\\.ts$'] },
    },
    {
      name: 'lower-layers-import-nothing-above',
      severity: 'error',
      comment:
        'src/storage, vault, config, lib, wire and metrics sit below the broker: they import each other, never src/broker, ' +
        'an adapter or the composition root. A type both sides need moves down (the DecisionSink lives in ' +
        'src/storage/decision-sink.ts); wiring that needs the broker goes to create-deps.ts.',
      from: { path: `^src/(${LOWER_LAYERS})/` },
      to: { path: [`^src/(${ADAPTERS}|broker|agent)/`, COMPOSITION_FILES] },
    },
    {
      name: 'agent-side-imports-only-wire-lib-client',
      severity: 'error',
      comment:
        'src/client (the agent-side library) and src/mcp (the MCP server over it) run beside the agent, not in the broker: ' +
        'they import src/wire, src/lib, src/client and their own folder, nothing else of src/. A type they share with ' +
        'the broker belongs in src/wire.',
      from: { path: '^src/(client|mcp)/' },
      to: { path: '^src/', pathNot: ['^src/(wire|lib|client)/', '^src/$1/'] },
    },
    {
      name: 'agent-commands-import-only-the-agent-side',
      severity: 'error',
      comment:
        'src/agent (the agent-side commands, shared by `jit` and the agent package\'s `jit-agent`) is bundled into ' +
        'packages/agent: it imports src/client, src/mcp, src/wire, src/lib and itself, nothing of the broker, storage ' +
        'or the other adapters (scripts/build-agent.mjs refuses to bundle anything else).',
      from: { path: '^src/agent/' },
      to: { path: '^src/', pathNot: '^src/(agent|client|mcp|wire|lib)/' },
    },
    {
      name: 'keys-are-shared-not-an-adapter',
      severity: 'error',
      comment: 'src/keys (the signing key ring) is used by the broker and the adapters alike, so it imports neither.',
      from: { path: '^src/keys/' },
      to: { path: [`^src/(${ADAPTERS}|broker|storage|agent)/`, COMPOSITION_FILES] },
    },
    {
      name: 'wire-is-zod-only',
      severity: 'error',
      comment:
        'src/wire holds the wire schemas shared by the routes and the agent side: it imports zod, src/lib and itself, ' +
        'nothing else (no Hono, no broker), so a client can load it alone.',
      from: { path: '^src/wire/' },
      to: { dependencyTypesNot: ['core'], pathNot: ['^src/(wire|lib)/', '(^|/)node_modules/zod/'] },
    },
    {
      name: 'better-sqlite3-only-in-storage',
      severity: 'error',
      comment: 'Only src/storage/ touches the database driver; everything else goes through the storage interface.',
      from: { path: '^src/', pathNot: '^src/storage/' },
      to: { path: '(^|/)better-sqlite3(/|$)' },
    },
  ],
  options: {
    tsPreCompilationDeps: true,
    doNotFollow: { path: 'node_modules' },
    moduleSystems: ['es6', 'cjs'],
  },
};
