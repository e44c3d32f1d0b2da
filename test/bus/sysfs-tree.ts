/**
 * A sysfs tree on disk for the `sysfs` driver's tests without FUSE: the emulator's tree copied into a
 * temporary directory as real directories, regular files (the attribute texts as read) and symlinks (the
 * kernel's relative targets). Reads through node:fs then see exactly what the emulator shows; writes only
 * change file contents (no kernel behind them), so these trees serve reads, the lock and first contact, and
 * the FUSE mount serves kernel semantics.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { EmulatedHostApi } from '../../src/emulator/api.js'
import { SysfsError } from '../../src/domain/errors.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

/** A fresh temporary directory, removed at teardown. */
export function tempDir(t: Teardown, prefix = 'apmatrix-sysfs-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Copies `host`'s `/sys` into `dir` (which plays `/sys`). Write-only attributes become empty files. */
export function materializeSysfs(host: EmulatedHostApi, dir: string): void {
  const walk = (sysPath: string, out: string): void => {
    for (const name of host.list(sysPath)) {
      const src = `${sysPath}/${name}`
      const dst = path.join(out, name)
      let target: string | undefined
      try {
        target = host.readlink(src)
      } catch {
        target = undefined
      }
      if (target !== undefined) {
        fs.symlinkSync(target, dst)
        continue
      }
      let isDir = true
      try {
        host.list(src)
      } catch {
        isDir = false
      }
      if (isDir) {
        fs.mkdirSync(dst)
        walk(src, dst)
        continue
      }
      let text = ''
      try {
        text = host.read(src)
      } catch (e) {
        if (!(e instanceof SysfsError && e.errno === 'EACCES')) throw e
      }
      fs.writeFileSync(dst, text)
    }
  }
  walk('/sys', dir)
}
