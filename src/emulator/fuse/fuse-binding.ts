/**
 * Loading the optional FUSE binding (npm `fuse-native` 2.2.6, an optionalDependency): apmatrix installs
 * and runs without it, only `emulator serve --mount` needs it, so it is loaded here, on demand.
 *
 * fuse-native's prebuilt addon needs `libfuse.so.2` without a search path of its own. Where the system has
 * no libfuse 2 (Debian ships only libfuse 3 with `fuse3`), the plain load fails; the package then brings
 * its own libfuse 2 (`fuse-shared-library`), which we load first with RTLD_GLOBAL so that the addon's
 * dependency is already satisfied. That load "fails" with "Module did not self-register" (it is a plain
 * library, not an addon) but the library stays in the process, which is all we need.
 */
import { createRequire } from 'node:module'
import os from 'node:os'

/** The reason `--mount` cannot work on this machine; the CLI exits with its own code for it. */
export class FuseUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'FuseUnavailableError'
  }
}

/** A file's attributes as fuse-native takes them (times as Dates or epoch milliseconds). */
export interface FuseStat {
  mode: number
  size: number
  nlink: number
  uid: number
  gid: number
  atime: Date
  mtime: Date
  ctime: Date
}

/** fuse-native's result callback: 0 or a byte count on success, a negative errno on failure; then the operation's value. */
export type FuseCb<T = never> = (code: number, value?: T) => void

/** The operations this project implements (the subset of fuse-native's table it uses). */
export interface FuseOperations {
  getattr(path: string, cb: FuseCb<FuseStat>): void
  readdir(path: string, cb: FuseCb<string[]>): void
  readlink(path: string, cb: FuseCb<string>): void
  open(path: string, flags: number, cb: FuseCb<number>): void
  create(path: string, mode: number, cb: FuseCb<number>): void
  read(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: FuseCb): void
  write(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: FuseCb): void
  release(path: string, fd: number, cb: FuseCb): void
  truncate(path: string, size: number, cb: FuseCb): void
  ftruncate(path: string, fd: number, size: number, cb: FuseCb): void
  utimens(path: string, atime: number, mtime: number, cb: FuseCb): void
  chmod(path: string, mode: number, cb: FuseCb): void
  chown(path: string, uid: number, gid: number, cb: FuseCb): void
  mknod(path: string, mode: number, dev: number, cb: FuseCb): void
  unlink(path: string, cb: FuseCb): void
  rename(src: string, dest: string, cb: FuseCb): void
  link(src: string, dest: string, cb: FuseCb): void
  symlink(src: string, dest: string, cb: FuseCb): void
  mkdir(path: string, mode: number, cb: FuseCb): void
  rmdir(path: string, cb: FuseCb): void
}

/** Mount options of fuse-native that this project sets (see its README). */
export interface FuseMountOptions {
  /** false: no per-operation timer (our operations answer synchronously). */
  timeout: false
  allowOther?: boolean
  defaultPermissions?: boolean
  fsname?: string
  subtype?: string
  /** fuse-native passes these only when truthy, so 0 must be the string '0'. */
  entryTimeout?: string
  attrTimeout?: string
}

/** One mount of fuse-native (a nanoresource). */
export interface FuseInstance {
  mount(cb: (err: Error | null) => void): void
  unmount(cb: (err: Error | null) => void): void
  /** Builds the `-o` option string of the mount (overridden to add options fuse-native has no name for). */
  _fuseOptions(): string
}

/** The fuse-native module: the constructor plus its static unmount helper (replaced, see sysfs-mount.ts). */
export interface FuseBinding {
  new (mnt: string, ops: FuseOperations, opts: FuseMountOptions): FuseInstance
  unmount(mnt: string, cb: (err: Error | null) => void): void
}

/** RTLD_NODELETE (glibc): not in os.constants.dlopen, but needed so the preloaded library is never unloaded. */
const RTLD_NODELETE = 0x1000

let loaded: FuseBinding | undefined

/**
 * Loads fuse-native once (`moduleName` is for tests). Throws {@link FuseUnavailableError} with what to do
 * when the package is not installed, is for another platform, or its libfuse cannot be loaded.
 */
export function loadFuseBinding(moduleName = 'fuse-native'): FuseBinding {
  if (loaded && moduleName === 'fuse-native') return loaded
  const req = createRequire(import.meta.url)
  let entry: string
  try {
    entry = req.resolve(moduleName)
  } catch (e) {
    throw new FuseUnavailableError(
      `the optional npm package ${moduleName} is not installed (it is an optionalDependency of apmatrix; install it with: npm install ${moduleName}@2.2.6)`,
      { cause: e },
    )
  }
  let binding: FuseBinding
  try {
    binding = req(entry) as FuseBinding
  } catch (first) {
    if (!/libfuse\.so/.test(String((first as Error).message))) throw unavailable(moduleName, first)
    preloadBundledLibfuse(entry)
    try {
      binding = req(entry) as FuseBinding
    } catch (second) {
      throw unavailable(moduleName, second)
    }
  }
  if (moduleName === 'fuse-native') loaded = binding
  return binding
}

function unavailable(moduleName: string, e: unknown): FuseUnavailableError {
  return new FuseUnavailableError(`cannot load ${moduleName}: ${(e as Error).message.split('\n')[0]}`, { cause: e })
}

/** Loads the libfuse 2 that fuse-native's dependency `fuse-shared-library` ships, globally, for the addon to find. */
function preloadBundledLibfuse(fuseNativeEntry: string): void {
  let lib: string
  try {
    lib = (createRequire(fuseNativeEntry)('fuse-shared-library') as { lib: string }).lib
  } catch (e) {
    throw new FuseUnavailableError(`no libfuse.so.2 on this machine and fuse-native's own copy cannot be found: ${(e as Error).message.split('\n')[0]}`, {
      cause: e,
    })
  }
  const flags = os.constants.dlopen.RTLD_NOW | os.constants.dlopen.RTLD_GLOBAL | RTLD_NODELETE
  try {
    process.dlopen({ exports: {} } as NodeJS.Module, lib, flags)
  } catch (e) {
    // A plain shared library is no addon: dlopen succeeded if the only complaint is the missing registration.
    if (!/did not self-register/.test(String((e as Error).message))) {
      throw new FuseUnavailableError(`cannot load fuse-native's libfuse (${lib}): ${(e as Error).message.split('\n')[0]}`, { cause: e })
    }
  }
}
