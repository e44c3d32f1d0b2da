/**
 * Mounting the emulated sysfs as a real filesystem: the FUSE face of `apmatrix emulator serve --mount DIR`,
 * where DIR plays `/sys` (`DIR/bus/ap/apmask`, `DIR/devices/vfio_ap/matrix/...`).
 *
 * Mount options: `direct_io` (no page cache: every read and write reaches the emulator, and a short read
 * is not padded to the 4096 bytes stat reports), entry/attribute/negative timeouts 0 (a created or removed
 * matrix device shows at once), and, when running as root, `allow_other` with `default_permissions`, so
 * other users see the modes sysfs would show them and nothing more.
 */
import fs from 'node:fs'
import { type FuseBinding, type FuseInstance, FuseUnavailableError, loadFuseBinding } from './fuse-binding.js'
import { lazyUnmount, prepareMountpoint } from './mountpoint.js'
import { type FaultyFace, type SysfsOperations, sysfsOperations } from './sysfs-operations.js'

/** Options of {@link mountSysfs}. */
export interface MountSysfsOptions {
  /** The FUSE device checked before mounting (default /dev/fuse; libfuse itself always opens /dev/fuse). */
  device?: string
  /** One line per lifecycle step or unexpected failure. */
  log?: (line: string) => void
  /** The module to load (default fuse-native; for tests). */
  moduleName?: string
}

/** A mounted sysfs view. */
export interface SysfsMount {
  /** The canonical mount directory. */
  readonly dir: string
  /** The operations serving it (their open-file table shows what is open). */
  readonly operations: SysfsOperations
  /** Detaches the mount (lazily: also while files are open); idempotent. Rejects when it cannot. */
  unmount(): Promise<void>
}

/**
 * Checks that this process can open the FUSE device read-write. Throws {@link FuseUnavailableError}
 * naming the cause: no device (module not loaded, or a container without it), or no permission.
 */
export function checkFuseDevice(device = '/dev/fuse'): void {
  let fd: number
  try {
    fd = fs.openSync(device, 'r+')
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOENT') {
      throw new FuseUnavailableError(
        `${device} does not exist: load the fuse kernel module (modprobe fuse) or, in a container, pass the device in (--device /dev/fuse)`,
        { cause: e },
      )
    }
    if (code === 'EACCES' || code === 'EPERM') {
      throw new FuseUnavailableError(`no permission to open ${device} (${code}): run as root, or as a user allowed to use FUSE`, { cause: e })
    }
    throw new FuseUnavailableError(`cannot open ${device}: ${(e as Error).message}`, { cause: e })
  }
  fs.closeSync(fd)
}

/**
 * fuse-native unmounts with `fusermount -uz` through a shell; ours runs without a shell (any directory
 * name is safe) and falls back to fusermount3 and umount -l, which is what Debian's fuse3 provides.
 */
function useSafeUnmount(Fuse: FuseBinding): void {
  Fuse.unmount = (mnt, cb) => {
    lazyUnmount(mnt).then(
      () => cb(null),
      (e: unknown) => cb(e as Error),
    )
  }
}

/**
 * Mounts `face` at `dir` (created if missing; a stale mount from a killed process is cleared first).
 * Throws {@link FuseUnavailableError} when FUSE cannot be used here (binding, device, permission, a busy
 * directory, or the mount itself failing), with a message that says what to do.
 */
export async function mountSysfs(dir: string, face: FaultyFace, opts: MountSysfsOptions = {}): Promise<SysfsMount> {
  const log = opts.log ?? (() => undefined)
  const Fuse = loadFuseBinding(opts.moduleName)
  checkFuseDevice(opts.device)
  useSafeUnmount(Fuse)
  const canonical = await prepareMountpoint(dir, log)
  const operations = sysfsOperations(face, { log })
  const root = process.getuid?.() === 0
  const fuse: FuseInstance = new Fuse(canonical, operations, {
    timeout: false,
    fsname: 'apmatrix-emulator',
    subtype: 'apmatrix',
    entryTimeout: '0',
    attrTimeout: '0',
    ...(root ? { allowOther: true, defaultPermissions: true } : {}),
  })
  // Options fuse-native has no name for are appended to the `-o` list it builds.
  const base = fuse._fuseOptions.bind(fuse)
  fuse._fuseOptions = () => {
    const o = base()
    const extra = 'direct_io,negative_timeout=0'
    return o === '' ? `-o${extra}` : `${o},${extra}`
  }
  try {
    await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())))
  } catch (e) {
    throw new FuseUnavailableError(`mounting on ${canonical} failed: ${(e as Error).message} (root, or a setuid fusermount, is needed to mount)`, { cause: e })
  }
  log(`sysfs mounted at ${canonical}`)
  let closing: Promise<void> | undefined
  return {
    dir: canonical,
    operations,
    unmount() {
      closing ??= new Promise<void>((resolve, reject) =>
        fuse.unmount((err) => {
          if (err) return reject(err)
          log(`sysfs unmounted from ${canonical}`)
          resolve()
        }),
      )
      return closing
    },
  }
}
