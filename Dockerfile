# jit-broker container image.
# NOTE: not built or run on the project's build machines (no Docker there);
# kept simple and reviewed by hand. See docs/operations.md.
#
#   docker build -t jit-broker .
#   docker run --rm -e NODE_ENV=development -p 127.0.0.1:8787:8787 jit-broker   # dev mode, to try it
#
# The image sets NODE_ENV=production: without VAULT_ADDR `jit serve` exits 2
# naming VAULT_ADDR rather than start dev mode (override NODE_ENV to try it).
#
# Production: mount policies at /etc/jit-broker/policies, keep
# /var/lib/jit-broker on a volume, and pass the configuration as
# environment (deploy/docker-compose.yml does all three).

# ---- build: compile the TypeScript, then keep production dependencies only ----
FROM node:20-bookworm-slim AS build
WORKDIR /app
# Toolchain only for a from-source build of better-sqlite3 when no prebuilt
# binary matches; it stays in this stage.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# The agent package is a workspace of the root package: npm ci needs its
# manifest (its bundle, built by `npm run build` below, is not part of the image).
COPY packages/agent/package.json ./packages/agent/
# Every dependency (the compiler is a development one). --ignore-scripts
# skips our own `prepare` (the build), which needs the sources copied below,
# so this layer stays cached until the lockfile changes; better-sqlite3's
# native install step is then run on its own.
RUN npm ci --ignore-scripts && npm rebuild better-sqlite3
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY bin ./bin
COPY src ./src
# src/ -> dist/ (JavaScript, migrations, the checkpoint worker), then drop
# the development dependencies (typescript, tsx, vitest, ...).
RUN npm run build && npm prune --omit=dev && npm cache clean --force
COPY policies ./policies

# ---- runtime ----
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    JIT_HOST=0.0.0.0 \
    JIT_PORT=8787 \
    JIT_DB=/var/lib/jit-broker/jit.db \
    JIT_POLICIES=/etc/jit-broker/policies
WORKDIR /app
RUN groupadd --system --gid 10001 jit \
 && useradd --system --uid 10001 --gid jit --home-dir /var/lib/jit-broker --shell /usr/sbin/nologin jit \
 && mkdir -p /var/lib/jit-broker /etc/jit-broker \
 && chown jit:jit /var/lib/jit-broker \
 && chmod 0700 /var/lib/jit-broker
# Code and dependencies stay owned by root: the service cannot modify them.
# The compiled JavaScript only: no sources, no compiler, no tsx.
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/bin ./bin
COPY --from=build /app/dist ./dist
COPY package.json ./
# The shipped example policies; mount your own over this directory.
COPY --from=build /app/policies /etc/jit-broker/policies

USER jit
# The SQLite database, its WAL and signing-keys.json live here: back it up.
VOLUME ["/var/lib/jit-broker"]
EXPOSE 8787
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.JIT_PORT||8787)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM stops it cleanly; SIGHUP reloads the policies (docker kill -s HUP).
STOPSIGNAL SIGTERM
CMD ["node", "bin/jit.mjs", "serve"]
