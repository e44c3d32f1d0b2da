/** The apmatrix version: `version` of package.json, read once (the CLI's --version, host-bus Info). */
import fs from 'node:fs'
import path from 'node:path'
import { projectRoot } from './paths.js'

let cached: string | undefined

/** The version of package.json ('0.0.0' when it has none). */
export function appVersion(): string {
  if (cached === undefined) {
    const pkg = JSON.parse(fs.readFileSync(path.join(projectRoot, 'package.json'), 'utf8')) as { version?: string }
    cached = pkg.version ?? '0.0.0'
  }
  return cached
}
