/**
 * Real foreign tools for the interop tests: Debian's `mdevctl` and `virt-xml-validate` (package
 * `libvirt-clients`, which runs `xmllint` from `libxml2-utils`). When a tool is missing, its tests are
 * SKIPPED loudly, except under CI=... or APMATRIX_REQUIRE_TOOLS=1, where they FAIL.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import type { Test } from 'tap'

/** True when the foreign tools must be present (CI, or APMATRIX_REQUIRE_TOOLS=1). */
export function toolsRequired(): boolean {
  const ci = process.env.CI
  return (ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false') || process.env.APMATRIX_REQUIRE_TOOLS === '1'
}

/** Absolute path of `cmd` on PATH, or undefined. */
export function which(cmd: string): string | undefined {
  const r = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', cmd], { encoding: 'utf8' })
  const p = r.stdout.trim()
  return r.status === 0 && p !== '' ? p : undefined
}

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
  if (missing.length === 0) {
    t.test(name, body)
    return
  }
  const message = `${missing.join(', ')} not found: install Debian packages '${packages}' (apt-get install -y ${packages})`
  if (toolsRequired()) {
    t.test(name, async (t) => {
      t.fail(`interop tools are REQUIRED here (CI or APMATRIX_REQUIRE_TOOLS=1): ${message}`)
    })
  } else {
    console.error(`\n*** interop test '${name}' SKIPPED: ${message} ***\n`)
    t.test(name, { skip: message }, async () => {})
  }
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
