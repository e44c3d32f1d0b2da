#!/usr/bin/env node
// Type-checks the whole tree (src, test, bench) and emits it to dist/, where the test suite runs from:
// tap runs dist/test/**/*.test.js on plain node with source maps, the same JavaScript `npm run build`
// ships, without a TypeScript loader in every test process (that loader cost each test file ~2 CPU-seconds).
// dist/test is emptied first, so a test deleted or renamed in test/ does not keep running from a stale copy.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
fs.rmSync(path.join(root, 'dist', 'test'), { recursive: true, force: true })
const tsc = path.join(root, 'node_modules', '.bin', 'tsc')
const r = spawnSync(tsc, ['-p', path.join(root, 'tsconfig.json')], { stdio: 'inherit', cwd: root })
process.exit(r.status ?? 1)
