/**
 * The directory a FUSE mount goes on: what is mounted there now (from /proc/self/mountinfo), clearing a
 * stale FUSE mount that a killed emulator left behind ("Transport endpoint is not connected"), and the
 * lazy unmount used on shutdown. Commands run without a shell, so odd directory names are safe.
 */
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { FuseUnavailableError } from './fuse-binding.js'

/** One line of /proc/self/mountinfo, reduced to what we use. */
export interface MountEntry {
  mountPoint: string
  fsType: string
  source: string
}

/** mountinfo escapes space, tab, newline and backslash as \ooo (octal). */
function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
}

/** Parses /proc/self/mountinfo text (proc(5)): mount point is field 5, then `-`, fs type, source. */
export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = []
  for (const line of text.split('\n')) {
    const f = line.split(' ')
    const dash = f.indexOf('-', 6)
    if (f.length < 10 || dash < 0 || f[4] === undefined) continue
    out.push({ mountPoint: unescapeMountField(f[4]), fsType: f[dash + 1] ?? '', source: unescapeMountField(f[dash + 2] ?? '') })
  }
  return out
}

/** The mount at exactly `dir` (the newest one when several are stacked), or undefined. */
export function mountAt(dir: string, mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8')): MountEntry | undefined {
  const found = parseMountinfo(mountinfo).filter((m) => m.mountPoint === dir)
  return found[found.length - 1]
}

/**
 * The absolute, symlink-free name of `dir` without touching `dir` itself (a stale FUSE mount cannot
 * even be stat'ed): the real path of its parent plus its own name.
 */
export function canonicalMountDir(dir: string): string {
  const abs = path.resolve(dir)
  const parent = path.dirname(abs)
  return abs === parent ? abs : path.join(fs.realpathSync(parent), path.basename(abs))
}

function run(cmd: string, args: string[]): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 10_000 }, (err, stdout, stderr) => resolve({ ok: !err, output: `${stdout}${stderr}`.trim() || (err ? err.message : '') }))
  })
}

/**
 * Detaches the mount at `dir` lazily (`-z`: also when something still has it open), trying fusermount3,
 * fusermount, then umount -l. Resolves when `dir` is no longer a mount point; rejects with the tools' output.
 */
export async function lazyUnmount(dir: string): Promise<void> {
  const tries: Array<[string, string[]]> = [
    ['fusermount3', ['-uz', dir]],
    ['fusermount', ['-uz', dir]],
    ['umount', ['-l', dir]],
  ]
  const outputs: string[] = []
  for (const [cmd, args] of tries) {
    const r = await run(cmd, args)
    if (!mountAt(dir)) return
    outputs.push(`${cmd} ${args.join(' ')}: ${r.output || 'still mounted'}`)
  }
  throw new Error(`cannot unmount ${dir}: ${outputs.join('; ')}`)
}

/** What is at the mount directory now. */
export type MountpointState = { state: 'free' } | { state: 'stale'; mount: MountEntry } | { state: 'busy'; mount: MountEntry; reason: string }

/**
 * Looks at `dir` (canonical, see {@link canonicalMountDir}): free, a stale FUSE mount (its server is gone:
 * ENOTCONN), or busy (a live mount, or something that is not FUSE: never touched).
 */
export async function inspectMountpoint(dir: string): Promise<MountpointState> {
  const mount = mountAt(dir)
  if (!mount) return { state: 'free' }
  if (mount.fsType !== 'fuse' && !mount.fsType.startsWith('fuse.')) return { state: 'busy', mount, reason: `a ${mount.fsType} filesystem is mounted there` }
  try {
    // Async on purpose: a synchronous stat of a FUSE mount would wait on whoever serves it.
    await fs.promises.stat(dir)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOTCONN') return { state: 'stale', mount }
    return {
      state: 'busy',
      mount,
      reason: `a FUSE filesystem (${mount.source}) is mounted there and answers ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
    }
  }
  return { state: 'busy', mount, reason: `a live FUSE filesystem (${mount.source}) is mounted there: is another 'apmatrix emulator serve --mount' running?` }
}

/**
 * Makes `dir` ready to mount on: creates it (and its parents) if missing, clears a stale FUSE mount left by a killed
 * process (logging it), refuses a live mount, a non-FUSE one, or a directory with files in it. Returns
 * the canonical directory.
 * Throws FuseUnavailableError when the directory cannot be used.
 */
export async function prepareMountpoint(dir: string, log: (line: string) => void = () => undefined): Promise<string> {
  let canonical: string
  try {
    fs.mkdirSync(path.dirname(path.resolve(dir)), { recursive: true })
    canonical = canonicalMountDir(dir)
  } catch (e) {
    throw new FuseUnavailableError(`mount directory ${dir}: ${(e as Error).message}`, { cause: e })
  }
  const seen = await inspectMountpoint(canonical)
  if (seen.state === 'busy') throw new FuseUnavailableError(`cannot mount on ${canonical}: ${seen.reason}`)
  if (seen.state === 'stale') {
    log(`clearing a stale FUSE mount at ${canonical} (${seen.mount.source}, ${seen.mount.fsType}) left by a process that is gone`)
    try {
      await lazyUnmount(canonical)
    } catch (e) {
      throw new FuseUnavailableError((e as Error).message, { cause: e })
    }
  }
  try {
    fs.mkdirSync(canonical, { recursive: true })
    if (!fs.statSync(canonical).isDirectory()) throw new Error('not a directory')
  } catch (e) {
    throw new FuseUnavailableError(`mount directory ${canonical}: ${(e as Error).message}`, { cause: e })
  }
  // libfuse refuses a directory with files in it (they would be hidden); say so before it does.
  if (fs.readdirSync(canonical).length > 0) throw new FuseUnavailableError(`mount directory ${canonical} is not empty (a FUSE mount needs an empty directory)`)
  return canonical
}
