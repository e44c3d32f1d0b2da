/**
 * `apmatrix emulator serve --mount DIR` as a child process (the build in dist/, what the binary runs), with
 * its gRPC client, for the tests that use a real FUSE mount. DIR is under a fresh temporary directory.
 * Teardown kills the process if it still runs, detaches whatever is still mounted at DIR (also after a
 * failed test or a SIGKILL) and only then removes the temporary directory: no mount is ever left behind.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { type RemoteEmulator, connectEmulator } from '../../../src/emulator-remote/client.js'
import { lazyUnmount, mountAt } from '../../../src/emulator/fuse/mountpoint.js'
import { type CliProcess, spawnCli } from '../../reliability/cli-process.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

/** The ready lines of `emulator serve --mount` (see its --help). */
const MOUNTED = /^apmatrix emulator sysfs mounted at (.+)$/
const LISTENING = /^apmatrix emulator listening on (\S+) \(profile (\S+), kernel (\S+), bootId ([0-9a-f-]{36})\)$/

/** A running emulator with its sysfs mounted. */
export interface MountedEmulator {
  cli: CliProcess
  /** The mount directory (plays /sys). */
  dir: string
  /** gRPC address of the same process. */
  addr: string
  bootId: string
  client: RemoteEmulator
}

/** Polls `pred` every 20 ms; rejects with `what` after `ms`. */
export async function until(what: string, pred: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** A temporary directory removed at teardown, after anything mounted below it was detached. */
export function scratchDir(t: Teardown): string {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-fuse-'))
  t.teardown(async () => {
    const mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8')
    for (const line of mountinfo.split('\n')) {
      const mp = line.split(' ')[4]
      if (mp && (mp === tmp || mp.startsWith(`${tmp}/`)) && mountAt(mp)) await lazyUnmount(mp)
    }
    // Never remove through a mount: rm would walk into the emulated tree (or a dead one).
    if (!fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${tmp}`)) fs.rmSync(tmp, { recursive: true, force: true })
  })
  return tmp
}

/**
 * Starts the emulator with `--mount dir` (default: `sys` in a new scratch directory) and a manual clock (or `opts.clock`),
 * waits until it is mounted and listening, and connects a client. Rejects with the child's stderr when
 * it exits first.
 */
export async function startMounted(
  t: Teardown,
  opts: {
    dir?: string
    profile?: string
    kernel?: string
    env?: Record<string, string>
    clock?: 'manual' | 'realtime'
    tickMs?: number
    bootIdFile?: string
  } = {},
): Promise<MountedEmulator> {
  const dir = opts.dir ?? path.join(scratchDir(t), 'sys')
  const args = ['emulator', 'serve', '--addr', '127.0.0.1:0', '--profile', opts.profile ?? 'spec-fixture', '--clock', opts.clock ?? 'manual', '--mount', dir]
  if (opts.tickMs !== undefined) args.push('--tick-ms', String(opts.tickMs))
  if (opts.bootIdFile !== undefined) args.push('--boot-id-file', opts.bootIdFile)
  if (opts.kernel) args.push('--kernel', opts.kernel)
  const cli = spawnCli(t, args, opts.env)
  // A hang guard, not a speed limit: mounting on a loaded 2-core machine has taken more than 20 s.
  await until('the listening line', () => cli.stdout.some((l) => LISTENING.test(l)) || cli.dead, 90_000).catch(() => undefined)
  const ready = cli.stdout.map((l) => LISTENING.exec(l)).find((m) => m)
  if (!ready)
    throw new Error(
      `emulator serve --mount did not come up (exit ${cli.dead ? 'yes' : 'no'}):\nstdout: ${cli.stdout.join('\n')}\nstderr: ${cli.stderr.join('\n')}`,
    )
  const mounted = cli.stdout.map((l) => MOUNTED.exec(l)).find((m) => m)
  if (!mounted || mounted[1] !== `${fs.realpathSync(path.dirname(dir))}/${path.basename(dir)}`)
    throw new Error(`no (or another) mount line: ${cli.stdout.join('\n')}`)
  const client = connectEmulator(ready[1]!, { timeoutMs: 5000 })
  t.teardown(() => client.close())
  return { cli, dir: mounted[1], addr: ready[1]!, bootId: ready[4]!, client }
}
