#!/usr/bin/env node
// `jit-agent`: the agent side of jit-broker (request, status, claim, revoke, mcp) over HTTP.
// dist/ is bundled from the repository's src/agent, src/client, src/mcp and src/wire by scripts/build.mjs.
import { runAgentCli } from '../dist/cli.js';

process.exitCode = await runAgentCli(process.argv.slice(2));
