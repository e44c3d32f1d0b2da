/**
 * Service configuration (product.md §7): environment variables, each also a flag of `apmatrix serve`
 * (flags win). Validated once at start; a bad value stops the process with a message naming the setting.
 */
import { parseDatabaseUrl } from './store/config.js'
import type { KernelProfileName } from './emulator/api.js'

/** One host this process manages. */
export type HostSpec =
  | { name: string; kind: 'emulator'; profile: string; kernel: KernelProfileName }
  | { name: string; kind: 'remote-emulator'; addr: string }

export interface ServiceConfig {
  databaseUrl: string
  http: { host: string; port: number }
  grpc: { host: string; port: number }
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  hosts: HostSpec[]
  replicaId: string | undefined
  drainTimeoutMs: number
  resyncMs: number
  leaseTtlMs: number
  /** Test hook for crash-safety tests: `point:n` kills the process (SIGKILL) at the n-th time a reconcile reaches `point`. */
  crashAt: { point: 'beforeBusWrite' | 'afterBusWrite' | 'beforeStatusWrite'; nth: number } | undefined
}

/** A bad setting: the message names it and says what is accepted. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

/** Settings: env name, flag name, default. The flag of `apmatrix serve` is `--<flag>`. */
export const SETTINGS = {
  databaseUrl: { env: 'DATABASE_URL', flag: 'database-url', def: 'file:./data/apmatrix.db', help: 'file:PATH (SQLite) or postgresql://...' },
  http: { env: 'APMATRIX_HTTP_ADDR', flag: 'http-addr', def: '127.0.0.1:8080', help: 'REST listen address host:port' },
  grpc: { env: 'APMATRIX_GRPC_ADDR', flag: 'grpc-addr', def: '127.0.0.1:50051', help: 'gRPC listen address host:port' },
  profile: { env: 'APMATRIX_PROFILE', flag: 'profile', def: 'demo', help: 'hardware profile of the emulated host `local`: spec-fixture, demo, full or a JSON file' },
  kernel: { env: 'APMATRIX_KERNEL', flag: 'kernel', def: 'current-6.x', help: 'kernel profile of emulated hosts: current-6.x, legacy-5.x, 6.19-override' },
  emulatorAddr: { env: 'APMATRIX_EMULATOR_ADDR', flag: 'emulator-addr', def: '', help: 'host:port of an `apmatrix emulator serve` process to manage as host `local` instead of an in-process emulator' },
  hosts: { env: 'APMATRIX_HOSTS', flag: 'hosts', def: '', help: 'several hosts: name=PROFILE or name@host:port, comma separated (overrides --profile/--emulator-addr)' },
  logLevel: { env: 'APMATRIX_LOG_LEVEL', flag: 'log-level', def: 'info', help: 'fatal, error, warn, info, debug, trace, silent' },
  replicaId: { env: 'APMATRIX_REPLICA_ID', flag: 'replica-id', def: '', help: 'lease holder id of this replica (default: generated per process)' },
  drainTimeoutMs: { env: 'APMATRIX_DRAIN_TIMEOUT_MS', flag: 'drain-timeout-ms', def: '30000', help: 'how long a queue may drain before it is handed over anyway' },
  resyncMs: { env: 'APMATRIX_RESYNC_MS', flag: 'resync-ms', def: '30000', help: 'periodic full reconcile of every host' },
  leaseTtlMs: { env: 'APMATRIX_LEASE_TTL_MS', flag: 'lease-ttl-ms', def: '15000', help: 'host lease time (a dead replica\'s hosts move after this)' },
  crashAt: { env: 'APMATRIX_CRASH_AT', flag: 'crash-at', def: '', help: 'TEST ONLY: point:n, SIGKILL at the n-th beforeBusWrite|afterBusWrite|beforeStatusWrite' },
} as const

export type SettingName = keyof typeof SETTINGS

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
const KERNELS: KernelProfileName[] = ['current-6.x', 'legacy-5.x', '6.19-override']
const HOST_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

function parseAddr(name: string, v: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(v)
  const port = m ? Number(m[2]) : NaN
  if (!m || port > 65535) throw new ConfigError(`${name}: '${v}' is not host:port (e.g. 127.0.0.1:8080)`)
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port }
}

function parseMs(name: string, v: string, min: number, max: number): number {
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new ConfigError(`${name}: '${v}' must be an integer number of milliseconds in ${min}..${max}`)
  return Number(v)
}

/**
 * Builds the configuration from flags (`--http-addr` ...) over the environment over defaults.
 * Throws {@link ConfigError} naming the first bad setting.
 */
export function loadConfig(flags: Partial<Record<SettingName, string>>, env: NodeJS.ProcessEnv): ServiceConfig {
  const get = (k: SettingName): string => flags[k] ?? env[SETTINGS[k].env] ?? SETTINGS[k].def
  const label = (k: SettingName) => `${SETTINGS[k].env} / --${SETTINGS[k].flag}`

  const databaseUrl = get('databaseUrl')
  try {
    parseDatabaseUrl(databaseUrl)
  } catch (e) {
    throw new ConfigError(`${label('databaseUrl')}: ${(e as Error).message}`)
  }
  const logLevel = get('logLevel')
  if (!(LEVELS as readonly string[]).includes(logLevel)) throw new ConfigError(`${label('logLevel')}: '${logLevel}' is not one of ${LEVELS.join(', ')}`)
  const kernel = get('kernel') as KernelProfileName
  if (!KERNELS.includes(kernel)) throw new ConfigError(`${label('kernel')}: '${kernel}' is not one of ${KERNELS.join(', ')}`)

  let hosts: HostSpec[]
  const list = get('hosts')
  if (list) {
    hosts = list.split(',').map((item) => {
      const m = /^([^=@]+)(?:=(.+)|@(.+))?$/.exec(item.trim())
      const name = m?.[1] ?? ''
      if (!m || !HOST_NAME.test(name)) throw new ConfigError(`${label('hosts')}: '${item}' is not name=PROFILE or name@host:port (names: lowercase letters, digits, '-')`)
      if (m[3]) {
        parseAddr(label('hosts'), m[3])
        return { name, kind: 'remote-emulator', addr: m[3] }
      }
      return { name, kind: 'emulator', profile: m[2] ?? get('profile'), kernel }
    })
    const names = new Set(hosts.map((h) => h.name))
    if (names.size !== hosts.length) throw new ConfigError(`${label('hosts')}: a host name appears twice`)
  } else if (get('emulatorAddr')) {
    parseAddr(label('emulatorAddr'), get('emulatorAddr'))
    hosts = [{ name: 'local', kind: 'remote-emulator', addr: get('emulatorAddr') }]
  } else {
    hosts = [{ name: 'local', kind: 'emulator', profile: get('profile'), kernel }]
  }

  let crashAt: ServiceConfig['crashAt']
  const c = get('crashAt')
  if (c) {
    const m = /^(beforeBusWrite|afterBusWrite|beforeStatusWrite):(\d+)$/.exec(c)
    if (!m || Number(m[2]) < 1) throw new ConfigError(`${label('crashAt')}: '${c}' is not point:n (point: beforeBusWrite, afterBusWrite, beforeStatusWrite; n >= 1)`)
    crashAt = { point: m[1] as 'beforeBusWrite', nth: Number(m[2]) }
  }

  return {
    databaseUrl,
    http: parseAddr(label('http'), get('http')),
    grpc: parseAddr(label('grpc'), get('grpc')),
    logLevel: logLevel as ServiceConfig['logLevel'],
    hosts,
    replicaId: get('replicaId') || undefined,
    drainTimeoutMs: parseMs(label('drainTimeoutMs'), get('drainTimeoutMs'), 0, 3_600_000),
    resyncMs: parseMs(label('resyncMs'), get('resyncMs'), 100, 86_400_000),
    leaseTtlMs: parseMs(label('leaseTtlMs'), get('leaseTtlMs'), 500, 600_000),
    crashAt,
  }
}
