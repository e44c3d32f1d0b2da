#!/usr/bin/env node
// The `apmatrix` command. Runs the compiled CLI (built by `npm ci` through the `prepare` script).
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
const main = new URL('../dist/src/cli/main.js', import.meta.url)
if (!existsSync(fileURLToPath(main))) {
  console.error('apmatrix: dist/ is missing; run `npm ci` (or `npm run build`) in the checkout first')
  process.exit(70)
}
const { run } = await import(main.href)
process.exitCode = await run(process.argv.slice(2))
