# apmatrix service image: `apmatrix serve` (REST :8080, gRPC :50051), SQLite in /app/data by default or
# PostgreSQL with DATABASE_URL (see docker-compose.yml). Migrations are applied at start.
# No Docker engine runs on the development machines: this file is kept correct by reading, not by CI.
#
# Build: docker build -t apmatrix .      Run: docker compose up (service + PostgreSQL)

# ---- build stage: dependencies (including dev), Prisma client generation, tsc ----
FROM node:20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 falls back to compiling from source (node-gyp) when no prebuilt binary fits.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# Dependencies first so this layer is cached until the lockfile changes. --ignore-scripts: `prepare`
# (the build) needs the sources, which are not copied yet; better-sqlite3's native build is run
# explicitly instead.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts && npm rebuild better-sqlite3
COPY . .
# db:schemas writes prisma/{sqlite,postgres}/schema.prisma if stale; build = the `prepare` script:
# prisma generate (offline, see prisma/offline-generate.ts) + gRPC types from proto/ + tsc -> dist/.
RUN npm run db:schemas \
 && npm run build \
 && npm prune --omit=dev \
 && mkdir /out \
 && cp -r package.json package-lock.json bin dist node_modules /out/ \
 && for d in prisma proto; do if [ -d "$d" ]; then cp -r "$d" /out/; fi; done

# ---- runtime stage: compiled code and production dependencies only, non-root ----
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    APMATRIX_HTTP_ADDR=0.0.0.0:8080 \
    APMATRIX_GRPC_ADDR=0.0.0.0:50051 \
    DATABASE_URL=file:./data/apmatrix.db
WORKDIR /app
# openssl: docker-compose.yml's one-shot `certs` service makes the certificates with this image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssl \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build --chown=root:root /out/ /app/
# The `node` user (uid 1000) of the base image owns only the SQLite data folder; code stays root-owned.
RUN mkdir -p /app/data && chown node:node /app/data
USER node
VOLUME ["/app/data"]
EXPOSE 8080 50051
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "bin/apmatrix.mjs", "serve"]
