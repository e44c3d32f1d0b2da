/**
 * A private PostgreSQL cluster for outage tests: `initdb` as user postgres into a scratch directory, served on
 * its own port, so a test may stop, freeze (SIGSTOP) or cut it without touching the shared server on 5432.
 * Needs the Debian PostgreSQL server binaries and root (to run them as postgres); see {@link privatePostgresMissing}.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

interface Teardown {
  teardown(fn: () => unknown): void
}

/** The server binaries of the newest installed major (Debian layout), or undefined. */
function binDir(): string | undefined {
  const root = '/usr/lib/postgresql'
  if (!fs.existsSync(root)) return undefined
  const majors = fs
    .readdirSync(root)
    .filter((d) => /^\d+$/.test(d))
    .sort((a, b) => Number(b) - Number(a))
  for (const m of majors) if (fs.existsSync(path.join(root, m, 'bin', 'initdb'))) return path.join(root, m, 'bin')
  return undefined
}

/** Why a private cluster cannot be started here (undefined: it can). */
export function privatePostgresMissing(): string | undefined {
  if (!binDir()) return 'the PostgreSQL server binaries (/usr/lib/postgresql/N/bin/initdb) are not installed'
  if (process.getuid?.() !== 0) return 'starting a private cluster as user postgres needs root'
  if (spawnSync('id', ['postgres']).status !== 0) return 'there is no postgres user'
  return undefined
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo
      s.close(() => resolve(port))
    })
  })
}

/** A running private cluster. */
export interface PrivatePostgres {
  /** A superuser URL of its `postgres` database. */
  url: string
  port: number
  /** Stops the server (fast shutdown: connections are refused once it resolves). */
  stop(): Promise<void>
  /** Starts it again on the same port and data (accepting connections once it resolves). */
  start(): Promise<void>
  /** SIGSTOPs every process of the cluster: connections stay open, nothing answers (a blackhole). */
  freeze(): void
  /** SIGCONTs them. */
  thaw(): void
  /** Ends every client connection but the caller's (pg_terminate_backend), as an administrator or a failover would. */
  terminateConnections(): void
}

/** Starts a private cluster; it is stopped and removed at t's teardown (thawed first if frozen). */
export async function startPrivatePostgres(t: Teardown): Promise<PrivatePostgres> {
  const bin = binDir()
  if (!bin) throw new Error(privatePostgresMissing())
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-pg-'))
  fs.chmodSync(dir, 0o755)
  const data = path.join(dir, 'data')
  fs.mkdirSync(data)
  execFileSync('chown', ['-R', 'postgres:postgres', dir])
  const asPostgres = (cmd: string, args: string[]) =>
    execFileSync('runuser', ['-u', 'postgres', '--', path.join(bin, cmd), ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir })
  asPostgres('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync'])
  const port = await freePort()
  // Durability is not what these tests are about: fsync off keeps them fast on a shared machine.
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off`
  const startArgs = ['-D', data, '-o', opts, '-l', path.join(dir, 'log'), '-w', '-t', '60', 'start']
  // Restarts and stops during a test do not block its event loop (the clients it measures keep running).
  const asPostgresAsync = (cmd: string, args: string[]) =>
    new Promise<void>((resolve, reject) =>
      execFile('runuser', ['-u', 'postgres', '--', path.join(bin, cmd), ...args], { cwd: dir }, (e) => (e ? reject(e) : resolve())),
    )
  let frozen = false
  const pids = (): number[] => {
    const pidFile = path.join(data, 'postmaster.pid')
    if (!fs.existsSync(pidFile)) return []
    const main = Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0])
    const children = spawnSync('pgrep', ['-P', String(main)], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter(Boolean)
      .map(Number)
    return [main, ...children]
  }
  const signal = (sig: NodeJS.Signals) => {
    for (const pid of pids()) {
      try {
        process.kill(pid, sig)
      } catch {
        // exited meanwhile
      }
    }
  }
  asPostgres('pg_ctl', startArgs)
  t.teardown(() => {
    if (frozen) signal('SIGCONT')
    try {
      asPostgres('pg_ctl', ['-D', data, '-m', 'immediate', '-w', '-t', '60', 'stop'])
    } catch {
      // already stopped
    }
    fs.rmSync(dir, { recursive: true, force: true })
  })
  const url = `postgresql://postgres@127.0.0.1:${port}/postgres`
  return {
    url,
    port,
    stop: () => asPostgresAsync('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop']),
    start: () => asPostgresAsync('pg_ctl', startArgs),
    freeze() {
      frozen = true
      signal('SIGSTOP')
    },
    thaw() {
      signal('SIGCONT')
      frozen = false
    },
    terminateConnections() {
      asPostgres('psql', [
        '-h',
        dir,
        '-p',
        String(port),
        '-U',
        'postgres',
        '-d',
        'postgres',
        '-Atc',
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'",
      ])
    },
  }
}
