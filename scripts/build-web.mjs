#!/usr/bin/env node
// Builds the web console (docs/console.md): web/console/src/main.ts bundled by esbuild into one ES module,
// plus the page and its style sheet copied as they are, into dist/console (served at /ui by
// `apmatrix serve`). No inline script or style anywhere, so a strict Content-Security-Policy
// (`default-src 'self'`) holds. Part of `npm run build`.
import fs from 'node:fs'
import path from 'node:path'
import { build } from 'esbuild'

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
const src = path.join(root, 'web', 'console')
const out = path.join(root, 'dist', 'console')

fs.rmSync(out, { recursive: true, force: true })
fs.mkdirSync(out, { recursive: true })
await build({
  entryPoints: [path.join(src, 'src', 'main.ts')],
  outfile: path.join(out, 'console.js'),
  bundle: true,
  format: 'esm',
  target: ['chrome110', 'firefox115', 'safari16'],
  minify: true,
  sourcemap: true,
  legalComments: 'none',
  logLevel: 'warning',
})
for (const f of ['index.html', 'console.css', 'favicon.svg']) fs.copyFileSync(path.join(src, f), path.join(out, f))
