#!/usr/bin/env node
// Runs the reliability suite (dist/test/reliability/*.test.js) two files at a time, except the files that
// package.json's `tap.serial` names: those measure latency or load-sensitive bounds (the FUSE properties, store
// and replica outages, takeover bounds, the watchers that must keep up), so each runs alone, on a quiet machine.
// The fuzz runs are time-boxed too, but their 10,000 cases take 30 to 50 s alone, far inside their 165 s box:
// they run beside other files.
// tap treats a serial file as a barrier (it starts when every running file has ended, and nothing starts
// beside it), so the parallel files go first, then the serial ones. Extra arguments go to tap.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
const dir = path.join('dist', 'test', 'reliability')
const serial = new Set(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).tap.serial.map((f) => path.normalize(f)))
const files = fs
  .readdirSync(path.join(root, dir))
  .filter((f) => f.endsWith('.test.js'))
  .sort()
  .map((f) => path.join(dir, f))
const unknown = [...serial].filter((f) => f.startsWith(dir) && !files.includes(f))
if (unknown.length) {
  console.error(`package.json tap.serial names files that do not exist: ${unknown.join(', ')}`)
  process.exit(2)
}
const ordered = [...files.filter((f) => !serial.has(f)), ...files.filter((f) => serial.has(f))]
const tap = path.join(root, 'node_modules', '.bin', 'tap')
const r = spawnSync(tap, ['--jobs=2', ...process.argv.slice(2), ...ordered], { stdio: 'inherit', cwd: root })
process.exit(r.status ?? 1)
