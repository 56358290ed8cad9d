#!/usr/bin/env node
// Entry point of the `jit` CLI. The TypeScript sources run through tsx's
// loader so there is no separate build step to drift out of date.
import { register } from 'tsx/esm/api';

register();
const { runCli } = await import('../src/cli/main.ts');
process.exitCode = await runCli(process.argv.slice(2));
