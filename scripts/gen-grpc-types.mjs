#!/usr/bin/env node
// Generates TypeScript types for proto/apmatrix/v1/*.proto into src/generated/grpc/ (git-ignored), with
// the same options the server loads the protos with (src/transport/grpc/proto.ts), so handlers are
// type-checked against the .proto. `--check` only verifies the output is up to date (exit 1 if not).
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const protoDir = path.join(root, 'proto')
const outDir = path.join(root, 'src/generated/grpc')
const files = fs
  .readdirSync(path.join(protoDir, 'apmatrix/v1'))
  .filter((f) => f.endsWith('.proto'))
  .sort()
  .map((f) => `apmatrix/v1/${f}`)
const bin = path.join(root, 'node_modules/.bin/proto-loader-gen-types')
const args = (out) => [
  '--keepCase',
  '--longs=String',
  '--enums=String',
  '--defaults',
  '--oneofs',
  '--grpcLib=@grpc/grpc-js',
  '--importFileExtension=.js',
  '-I',
  protoDir,
  '-O',
  out,
  ...files,
]

const check = process.argv.includes('--check')
const target = check ? fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-grpc-types-')) : outDir
if (!check) fs.rmSync(outDir, { recursive: true, force: true })
execFileSync(bin, args(target), { stdio: 'inherit' })
if (check) {
  const list = (d) =>
    fs
      .readdirSync(d, { recursive: true })
      .filter((f) => fs.statSync(path.join(d, f)).isFile())
      .sort()
  const a = list(target)
  const same =
    fs.existsSync(outDir) &&
    JSON.stringify(a) === JSON.stringify(list(outDir)) &&
    a.every((f) => fs.readFileSync(path.join(target, f), 'utf8') === fs.readFileSync(path.join(outDir, f), 'utf8'))
  fs.rmSync(target, { recursive: true, force: true })
  if (!same) {
    console.error('src/generated/grpc is out of date: run node scripts/gen-grpc-types.mjs')
    process.exit(1)
  }
} else {
  console.log(`gRPC types for ${files.length} proto files in ${path.relative(root, outDir)}`)
}
