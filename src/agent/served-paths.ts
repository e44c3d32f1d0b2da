/**
 * What an agent serves of its host's sysfs: only the AP parts the bus port and the mdev tools use, so a
 * client of the agent (unauthenticated until the security issue brings TLS) cannot read or write the rest
 * of the machine's /sys (power, kernel parameters, other drivers). Writes are also checked on the real
 * path, after symlinks: a queue's `driver/module/...` or a device's `iommu_group/...` lead out of these
 * subtrees and are refused even though their first segments are served.
 */
import fs from 'node:fs/promises'
import path from 'node:path'
import { SysfsError } from '../domain/errors.js'

/** The served subtrees, as bus port paths. */
export const SERVED_SUBTREES = ['/sys/bus/ap', '/sys/devices/ap', '/sys/devices/vfio_ap', '/sys/class/mdev_bus', '/sys/bus/mdev'] as const

function under(p: string, subtrees: readonly string[]): boolean {
  return subtrees.some((s) => p === s || p.startsWith(`${s}/`))
}

/** `p` when it lies in a served subtree; SysfsError EACCES otherwise. Lexical (the access rejects `..`). */
export function servedPath(p: string): string {
  const norm = p.replace(/\/{2,}/g, '/')
  if (!under(norm, SERVED_SUBTREES)) throw new SysfsError('EACCES', `${p.slice(0, 200)}: not served by this agent (only ${SERVED_SUBTREES.join(', ')})`)
  return p
}

/**
 * Refuses (EACCES) a write whose file, after symlinks, is not in a served subtree of `root`. A file that
 * does not exist is left to the write itself (ENOENT, as the kernel answers).
 */
export async function checkWriteTarget(root: string, file: string, p: string): Promise<void> {
  let real: string
  let realRoot: string
  try {
    ;[real, realRoot] = await Promise.all([fs.realpath(file), fs.realpath(root)])
  } catch {
    return
  }
  const rel = path.relative(realRoot, real)
  const asSys = rel === '' ? '/sys' : `/sys/${rel.split(path.sep).join('/')}`
  if (rel.startsWith('..') || path.isAbsolute(rel) || !under(asSys, SERVED_SUBTREES)) {
    throw new SysfsError('EACCES', `${p.slice(0, 200)}: resolves to ${asSys.slice(0, 200)}, which this agent does not write`)
  }
}
