/**
 * Child processes of the crash-safety tests: `apmatrix emulator serve` and `apmatrix serve`, run from the
 * build in dist/ (bin/apmatrix.mjs, what `npm start` runs; `npm test` builds it first in `pretest`), each
 * with its output collected line by line. Only the processes started here are ever signalled, by pid.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { projectRoot } from '../../src/paths.js'
import { until } from '../scenario/rest-client.js'

const BIN = path.join(projectRoot, 'bin/apmatrix.mjs')
const DIST_MAIN = path.join(projectRoot, 'dist/src/cli/main.js')

interface Teardown {
  teardown(fn: () => unknown): void
}

/** How a child ended. */
export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

/** A running `apmatrix` child. */
export interface CliProcess {
  proc: ChildProcess
  pid: number
  stdout: string[]
  stderr: string[]
  /** Resolves when the process has exited. */
  exited: Promise<Exit>
  /** True once it exited. */
  readonly dead: boolean
}

function collect(stream: NodeJS.ReadableStream, into: string[]): void {
  let buf = ''
  stream.setEncoding('utf8')
  stream.on('data', (d: string) => {
    buf += d
    let i
    while ((i = buf.indexOf('\n')) >= 0) {
      into.push(buf.slice(0, i))
      buf = buf.slice(i + 1)
    }
  })
}

/** Spawns `apmatrix ...args`; killed (SIGKILL, by its pid) at teardown if still running. */
export function spawnCli(t: Teardown, args: string[], env: Record<string, string> = {}): CliProcess {
  if (!fs.existsSync(DIST_MAIN)) throw new Error(`${DIST_MAIN} is missing: build first (npx tsc -p tsconfig.build.json, or npm run build)`)
  const proc = spawn(process.execPath, [BIN, ...args], { cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
  const stdout: string[] = []
  const stderr: string[] = []
  collect(proc.stdout!, stdout)
  collect(proc.stderr!, stderr)
  let dead = false
  const exited = new Promise<Exit>((resolve) =>
    proc.once('exit', (code, signal) => {
      dead = true
      resolve({ code, signal })
    }),
  )
  t.teardown(async () => {
    if (!dead) {
      proc.kill('SIGKILL')
      await exited
    }
  })
  return {
    proc,
    pid: proc.pid!,
    stdout,
    stderr,
    exited,
    get dead() {
      return dead
    },
  }
}

/**
 * Waits for a stdout line matching `re`, or for the process to exit first (then resolves null). The deadline is
 * for a process that hangs, not a speed limit: three replicas starting at once on a loaded 2-core machine have
 * taken more than 30 s.
 */
export async function readyLine(p: CliProcess, re: RegExp, what: string, timeoutMs = 90_000): Promise<RegExpExecArray | null> {
  return until(
    what,
    async () => {
      for (const l of p.stdout) {
        const m = re.exec(l)
        if (m) return m
      }
      return p.dead ? null : undefined
    },
    { timeoutMs, everyMs: 20, describe: () => ({ stdout: p.stdout, stderr: p.stderr.slice(-20) }) },
  )
}

const EMULATOR_READY = /^apmatrix emulator listening on (\S+) /

/** `apmatrix emulator serve` on 127.0.0.1:0 (spec-fixture, real-time clock); resolves to its process and address. */
export async function startEmulatorProcess(t: Teardown): Promise<{ p: CliProcess; addr: string }> {
  const p = spawnCli(t, ['emulator', 'serve', '--addr', '127.0.0.1:0', '--profile', 'spec-fixture', '--clock', 'realtime', '--tick-ms', '10'])
  const m = await readyLine(p, EMULATOR_READY, 'the emulator ready line')
  if (!m) throw new Error(`the emulator exited before it was ready: ${p.stderr.join('\n')}`)
  return { p, addr: m[1]! }
}

const SERVICE_READY = /^apmatrix serving REST on (http:\/\/\S+)$/

/** A started `apmatrix serve`: its process and base URL (null when it died before it was ready). */
export interface ServiceProcess {
  p: CliProcess
  url: string | null
}

/**
 * `apmatrix serve` managing the emulator at `emulatorAddr` as host `local`, REST on 127.0.0.1:0,
 * with `crashAt` (APMATRIX_CRASH_AT) when given and `env` over the defaults. Short lease and resync so
 * a restart after a kill takes over quickly.
 */
export async function startServiceProcess(
  t: Teardown,
  o: { databaseUrl: string; emulatorAddr: string; crashAt?: string; env?: Record<string, string> },
): Promise<ServiceProcess> {
  const p = spawnCli(t, ['serve'], {
    DATABASE_URL: o.databaseUrl,
    APMATRIX_HTTP_ADDR: '127.0.0.1:0',
    APMATRIX_GRPC_ADDR: '127.0.0.1:0',
    APMATRIX_EMULATOR_ADDR: o.emulatorAddr,
    APMATRIX_LOG_LEVEL: 'warn',
    APMATRIX_RESYNC_MS: '500',
    APMATRIX_LEASE_TTL_MS: '1000',
    APMATRIX_DRAIN_TIMEOUT_MS: '5000',
    APMATRIX_CRASH_AT: o.crashAt ?? '',
    ...o.env,
  })
  const m = await readyLine(p, SERVICE_READY, 'the service ready line')
  return { p, url: m ? m[1]! : null }
}

/** The crash hook's own line on stderr (src/main.ts), or undefined when it did not fire. */
export function crashHookLine(p: CliProcess): string | undefined {
  return p.stderr.find((l) => l.includes('crash hook: SIGKILL at'))
}
