/**
 * What the tests that need something from the machine (a Debian tool, FUSE, a mount namespace) check;
 * the rule itself (run, loud skip, or fail in CI) is test/helpers/required.ts.
 */
import { spawnSync } from 'node:child_process'
import { FuseUnavailableError, loadFuseBinding } from '../../src/emulator/fuse/fuse-binding.js'
import { checkFuseDevice } from '../../src/emulator/fuse/sysfs-mount.js'
import { requiredHere, requireOrSkip } from './required.js'

export { requireOrSkip }

/** True when the machine must have the tools the tests need (CI, or APMATRIX_REQUIRE_TOOLS=1). */
export function toolsRequired(): boolean {
  return requiredHere('tools')
}

/** Absolute path of `cmd` on PATH, or undefined. */
export function which(cmd: string): string | undefined {
  const r = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', cmd], { encoding: 'utf8' })
  const p = r.stdout.trim()
  return r.status === 0 && p !== '' ? p : undefined
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
