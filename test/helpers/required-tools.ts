/**
 * Tests that need something from the machine (a Debian tool, FUSE, a mount namespace) run when it is
 * there, are SKIPPED loudly when it is not, and FAIL instead of skipping under CI=... or
 * APMATRIX_REQUIRE_TOOLS=1, where the machine is supposed to have everything.
 */
import { spawnSync } from 'node:child_process'
import type { Test } from 'tap'
import { FuseUnavailableError, loadFuseBinding } from '../../src/emulator/fuse/fuse-binding.js'
import { checkFuseDevice } from '../../src/emulator/fuse/sysfs-mount.js'

/** True when the machine must have what the tests need (CI, or APMATRIX_REQUIRE_TOOLS=1). */
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

/**
 * Registers `body` as subtest `name` when `missing` is undefined. Otherwise the subtest is skipped with
 * `missing` printed loudly on stderr, or fails with it when {@link toolsRequired}.
 */
export function requireOrSkip(t: Test, name: string, missing: string | undefined, body: (t: Test) => Promise<void>): void {
  if (missing === undefined) {
    t.test(name, body)
    return
  }
  if (toolsRequired()) {
    t.test(name, async (t) => {
      t.fail(`REQUIRED here (CI or APMATRIX_REQUIRE_TOOLS=1): ${missing}`)
    })
  } else {
    console.error(`\n*** test '${name}' SKIPPED: ${missing} ***\n`)
    t.test(name, { skip: missing }, async () => {})
  }
}

/**
 * Why a real FUSE mount of the emulator cannot be tested here (undefined: it can): root, /dev/fuse, the
 * fuse-native binding, fusermount3 (Debian package fuse3) and, with `namespaces`, `unshare -m` (util-linux)
 * so a test can bind the mount over /sys without touching the machine's own /sys.
 */
export function fuseMissing(opts: { namespaces?: boolean } = {}): string | undefined {
  if (process.getuid?.() !== 0) return 'FUSE mount tests need root (mounting, and binding over /sys in a private namespace)'
  try {
    loadFuseBinding()
    checkFuseDevice()
  } catch (e) {
    if (e instanceof FuseUnavailableError) return `FUSE is not usable here: ${e.message}`
    throw e
  }
  if (which('fusermount3') === undefined) return "fusermount3 not found: install Debian package 'fuse3' (apt-get install -y fuse3)"
  if (opts.namespaces) {
    const r = spawnSync('unshare', ['-m', 'true'], { encoding: 'utf8' })
    if (r.error || r.status !== 0)
      return `'unshare -m' does not work here (util-linux; a private mount namespace is needed): ${r.error?.message ?? r.stderr.trim()}`
  }
  return undefined
}
