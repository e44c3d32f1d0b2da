#!/usr/bin/env node
// Builds only when the build's inputs changed, so `npm ci` (whose `prepare` builds) followed by
// `npm test` (whose `pretest` needs the build) builds once.
//
//   node scripts/build-stamp.mjs write            after a build: record the inputs' digest in dist/.build-stamp
//   node scripts/build-stamp.mjs build-if-stale   run `npm run build` unless dist/.build-stamp matches the inputs
//
// The digest is a SHA-256 of the content (not the mtimes: a fresh clone has new mtimes) of every input of
// `npm run build`: the TypeScript sources (src without src/generated, bench, web), the protos, the Prisma data
// model and configs, the generators, the tsconfigs and the lock file.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
const STAMP = path.join(root, 'dist', '.build-stamp')
const DIRS = ['src', 'bench', 'proto', 'prisma', 'web']
const FILES = [
  'package.json',
  'package-lock.json',
  'tsconfig.json',
  'tsconfig.build.json',
  'prisma.config.ts',
  'prisma.postgres.config.ts',
  'scripts/gen-grpc-types.mjs',
  'scripts/prisma-schemas.mjs',
  'scripts/no-schema-engine.mjs',
  'scripts/build-web.mjs',
]
// Outputs of the build, or data the build does not read.
const SKIP = new Set(['src/generated'])

function walk(rel, out) {
  if (SKIP.has(rel)) return
  const abs = path.join(root, rel)
  const st = fs.statSync(abs, { throwIfNoEntry: false })
  if (!st) return
  if (st.isDirectory()) for (const name of fs.readdirSync(abs).sort()) walk(path.posix.join(rel, name), out)
  else if (st.isFile()) out.push(rel)
}

function digest() {
  const files = []
  for (const d of DIRS) walk(d, files)
  for (const f of FILES) walk(f, files)
  const h = createHash('sha256')
  for (const f of files)
    h.update(`${f}\0`)
      .update(fs.readFileSync(path.join(root, f)))
      .update('\0')
  return h.digest('hex')
}

const mode = process.argv[2]
if (mode === 'write') {
  fs.mkdirSync(path.dirname(STAMP), { recursive: true })
  fs.writeFileSync(STAMP, `${digest()}\n`)
} else if (mode === 'build-if-stale') {
  const stamp = fs.existsSync(STAMP) ? fs.readFileSync(STAMP, 'utf8').trim() : ''
  const generated = fs.existsSync(path.join(root, 'src/generated/prisma-sqlite')) && fs.existsSync(path.join(root, 'src/generated/grpc'))
  if (stamp === digest() && generated) {
    console.log('build is up to date (dist/.build-stamp matches the sources): not building again')
  } else {
    const r = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' })
    process.exit(r.status ?? 1)
  }
} else {
  console.error('usage: node scripts/build-stamp.mjs write|build-if-stale')
  process.exit(2)
}
