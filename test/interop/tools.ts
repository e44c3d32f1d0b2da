/**
 * Real foreign tools for the interop tests: Debian's `mdevctl` and `virt-xml-validate` (package
 * `libvirt-clients`, which runs `xmllint` from `libxml2-utils`). When a tool is missing, its tests are
 * SKIPPED loudly, except under CI=... or APMATRIX_REQUIRE_TOOLS=1, where they FAIL.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import type { Test } from 'tap'
import { requireOrSkip, toolsRequired, which } from '../helpers/required-tools.js'

export { toolsRequired, which }

/** Runs a command; returns status, stdout and stderr (never throws on a non-zero exit). */
export function run(cmd: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 })
  if (r.error) throw r.error
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

/**
 * Registers `body` as subtest `name` when every command in `cmds` exists. Otherwise the subtest is
 * skipped with a loud message naming the Debian packages, or fails when {@link toolsRequired}.
 */
export function withTools(t: Test, name: string, cmds: string[], packages: string, body: (t: Test) => Promise<void>): void {
  const missing = cmds.filter((c) => which(c) === undefined)
  requireOrSkip(
    t,
    name,
    missing.length === 0 ? undefined : `${missing.join(', ')} not found: install Debian packages '${packages}' (apt-get install -y ${packages})`,
    body,
  )
}

/** True when this process may write `dir` (mdevctl's definitions live under /etc, normally root-only). */
export function canWrite(dir: string): boolean {
  try {
    fs.accessSync(dir, fs.constants.W_OK)
    return true
  } catch {
    return false
  }
}
