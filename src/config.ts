/**
 * Service configuration (README (Configuration)): environment variables, each also a flag of `apmatrix serve`
 * (flags win). Validated once at start; a bad value stops the process with a message naming the setting.
 */
import path from 'node:path'
import { parseDatabaseUrl } from './store/config.js'
import type { KernelProfileName } from './emulator/api.js'
import { AP_CONFIG_LOCK_PATH } from './bus/ap-config-lock.js'
import { WATCH_MODES, type WatchMode } from './bus/change-watcher.js'
import { clip } from './domain/text.js'
import { ApmatrixError } from './domain/errors.js'
import { isBuiltinProfile, loadProfile } from './emulator/profiles.js'
import { normaliseOrigin } from './transport/http/request-guard.js'
import { JWT_ALGORITHMS } from './auth/jwt.js'
import { loadBindings, RbacFileError } from './auth/roles.js'
import { loadStaticTokens, TokensFileError } from './auth/static-tokens.js'
import fs from 'node:fs'
import { type LimitsConfig, parseRateLimit } from './auth/limits.js'

/**
 * One host this process manages: `name=PROFILE` (an emulator in this process), `name@host:port` (an
 * `apmatrix agent` or `apmatrix emulator serve`; which one, its Info says), `name=sysfs:/path` (a /sys
 * of this machine, or a mount of one, through node:fs).
 */
export type HostSpec =
  | { name: string; kind: 'emulator'; profile: string; kernel: KernelProfileName }
  | { name: string; kind: 'remote'; addr: string }
  | { name: string; kind: 'sysfs'; root: string }

export interface ServiceConfig {
  databaseUrl: string
  http: { host: string; port: number }
  /** Origins allowed to call the REST API from a browser (CORS, and state-changing requests); empty = CORS off. */
  corsOrigins: string[]
  grpc: { host: string; port: number }
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  hosts: HostSpec[]
  replicaId: string | undefined
  drainTimeoutMs: number
  /** Default drain policy at the timeout (domain/drain-policy.ts). */
  drainOnTimeout: 'flush' | 'wait'
  resyncMs: number
  leaseTtlMs: number
  /** The longest one database round trip may take before the request answers 503 (StoreOptions.timeoutMs). */
  storeTimeoutMs: number
  /** Hosts the reconciler works on at once (ReconcilerOptions.concurrency). */
  reconcileConcurrency: number
  /**
   * Reads of matrix devices and masks answer from memory (src/service/read-cache.ts); a read whose copy was last
   * synced with the store longer ago than this syncs first, so another replica's write is seen at most this late.
   */
  readMaxStalenessMs: number
  /** `sysfs` hosts: the s390-tools lock, how long a pass waits for it, and change detection. */
  sysfs: { lockPath: string; watch: WatchMode; pollMs: number; bootIdFile: string | undefined }
  /** How long a pass waits for a host's AP configuration lock (sysfs hosts and agents) before it is retried later. */
  lockWaitMs: number
  /**
   * Security (docs/security.md): TLS files (a client CA makes client certificates required), static
   * tokens, JWT verification, the roles file, and the explicit opt-out of authentication off loopback.
   */
  security: SecurityConfig
  /** Per-subject limits (src/auth/limits.ts, docs/security.md (Limits)); 0 = off. */
  limits: LimitsConfig
  /** Test hook for crash-safety tests: `point:n` kills the process (SIGKILL) at the n-th time a reconcile reaches `point`. */
  crashAt: { point: 'beforeBusWrite' | 'afterBusWrite' | 'beforeStatusWrite'; nth: number } | undefined
}

/** The security settings (docs/security.md (Configuration)); files are checked at start. */
export interface SecurityConfig {
  tls: { cert: string; key: string; ca: string | undefined } | undefined
  tokensFile: string | undefined
  jwt: { jwks: string; issuer: string; audience: string; algorithms: string[]; clockToleranceSec: number } | undefined
  rbacFile: string | undefined
  insecureNoAuth: boolean
  /** True when any authentication method is configured (client certificates, static tokens, JWTs). */
  authEnabled: boolean
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
  corsOrigins: {
    env: 'APMATRIX_CORS_ORIGINS',
    flag: 'cors-origins',
    def: '',
    help: 'comma-separated origins (https://console.example:8443) a browser may call the REST API from; empty: CORS off',
  },
  grpc: { env: 'APMATRIX_GRPC_ADDR', flag: 'grpc-addr', def: '127.0.0.1:50051', help: 'gRPC listen address host:port' },
  profile: {
    env: 'APMATRIX_PROFILE',
    flag: 'profile',
    def: 'demo',
    help: 'hardware profile of the emulated host `local`: spec-fixture, demo, full or a JSON file',
  },
  kernel: { env: 'APMATRIX_KERNEL', flag: 'kernel', def: 'current-6.x', help: 'kernel profile of emulated hosts: current-6.x, legacy-5.x, 6.19-override' },
  emulatorAddr: {
    env: 'APMATRIX_EMULATOR_ADDR',
    flag: 'emulator-addr',
    def: '',
    help: 'host:port of an `apmatrix emulator serve` process to manage as host `local` instead of an in-process emulator',
  },
  hosts: {
    env: 'APMATRIX_HOSTS',
    flag: 'hosts',
    def: '',
    help: 'several hosts, comma separated: name=PROFILE (emulator in this process), name@host:port (apmatrix agent or emulator serve), name=sysfs:/path (a /sys through node:fs); overrides --profile/--emulator-addr',
  },
  sysfsLockPath: {
    env: 'APMATRIX_SYSFS_LOCK_PATH',
    flag: 'sysfs-lock-path',
    def: AP_CONFIG_LOCK_PATH,
    help: 'sysfs hosts: the s390-tools AP configuration lock taken around every pass of bus writes',
  },
  sysfsBootIdFile: {
    env: 'APMATRIX_SYSFS_BOOT_ID_FILE',
    flag: 'sysfs-boot-id-file',
    def: '',
    help: "sysfs hosts: file holding the boot id (default: the kernel's /proc/sys/kernel/random/boot_id for /sys; a stable id for a mount, so a reboot behind it shows as drift only)",
  },
  sysfsWatch: {
    env: 'APMATRIX_SYSFS_WATCH',
    flag: 'sysfs-watch',
    def: 'auto',
    help: `sysfs hosts: change detection, ${WATCH_MODES.join('|')} (auto: udevadm monitor for this machine's /sys, else polling)`,
  },
  sysfsPollMs: {
    env: 'APMATRIX_SYSFS_POLL_MS',
    flag: 'sysfs-poll-ms',
    def: '2000',
    help: 'sysfs hosts: poll period of bus/ap/scans, bindings, masks and the matrix device list',
  },
  lockWaitMs: {
    env: 'APMATRIX_LOCK_WAIT_MS',
    flag: 'lock-wait-ms',
    def: '5000',
    help: 'sysfs hosts and agents: how long a pass waits for the AP configuration lock before it is retried later',
  },
  logLevel: { env: 'APMATRIX_LOG_LEVEL', flag: 'log-level', def: 'info', help: 'fatal, error, warn, info, debug, trace, silent' },
  replicaId: { env: 'APMATRIX_REPLICA_ID', flag: 'replica-id', def: '', help: 'lease holder id of this replica (default: generated per process)' },
  drainTimeoutMs: {
    env: 'APMATRIX_DRAIN_TIMEOUT_MS',
    flag: 'drain-timeout-ms',
    def: '30000',
    help: "default drain timeout of the hand-over (a device's spec.drain.timeoutSeconds overrides it for the queues it takes)",
  },
  drainOnTimeout: {
    env: 'APMATRIX_DRAIN_ON_TIMEOUT',
    flag: 'drain-on-timeout',
    def: 'flush',
    help: 'default of what a drain does at its timeout: flush (hand over, count the lost requests) or wait (keep waiting, never lose a request)',
  },
  resyncMs: { env: 'APMATRIX_RESYNC_MS', flag: 'resync-ms', def: '30000', help: 'periodic full reconcile of every host' },
  reconcileConcurrency: {
    env: 'APMATRIX_RECONCILE_CONCURRENCY',
    flag: 'reconcile-concurrency',
    def: '4',
    help: 'hosts reconciled at once (1..64)',
  },
  readMaxStalenessMs: {
    env: 'APMATRIX_READ_MAX_STALENESS_MS',
    flag: 'read-max-staleness-ms',
    def: '1000',
    help: "reads answer from memory: another replica's write is visible at most this late (0: every read syncs)",
  },
  leaseTtlMs: { env: 'APMATRIX_LEASE_TTL_MS', flag: 'lease-ttl-ms', def: '15000', help: "host lease time (a dead replica's hosts move after this)" },
  storeTimeoutMs: {
    env: 'APMATRIX_STORE_TIMEOUT_MS',
    flag: 'store-timeout-ms',
    def: '10000',
    help: 'the longest a database round trip may take before the request fails with 503 UNAVAILABLE',
  },
  tlsCert: {
    env: 'APMATRIX_TLS_CERT',
    flag: 'tls-cert',
    def: '',
    help: 'PEM server certificate (chain) for REST and gRPC; with --tls-key turns TLS on (reloaded on SIGHUP)',
  },
  tlsKey: { env: 'APMATRIX_TLS_KEY', flag: 'tls-key', def: '', help: 'PEM private key of --tls-cert' },
  tlsCa: {
    env: 'APMATRIX_TLS_CA',
    flag: 'tls-ca',
    def: '',
    help: 'PEM CA bundle of client certificates: set = every client must present a certificate it signed (mutual TLS)',
  },
  authTokensFile: {
    env: 'APMATRIX_AUTH_TOKENS_FILE',
    flag: 'auth-tokens-file',
    def: '',
    help: 'static bearer tokens: lines name:sha256hex (reloaded on SIGHUP)',
  },
  jwtJwks: { env: 'APMATRIX_JWT_JWKS', flag: 'jwt-jwks', def: '', help: 'bearer JWTs: the JWKS file or https:// URL of the signing keys' },
  jwtIssuer: { env: 'APMATRIX_JWT_ISSUER', flag: 'jwt-issuer', def: '', help: 'bearer JWTs: the required iss' },
  jwtAudience: { env: 'APMATRIX_JWT_AUDIENCE', flag: 'jwt-audience', def: '', help: 'bearer JWTs: the required aud' },
  jwtAlgorithms: {
    env: 'APMATRIX_JWT_ALGORITHMS',
    flag: 'jwt-algorithms',
    def: 'RS256,ES256,EdDSA',
    help: `bearer JWTs: accepted algorithms, of ${JWT_ALGORITHMS.join(',')}`,
  },
  jwtClockTolerance: {
    env: 'APMATRIX_JWT_CLOCK_TOLERANCE',
    flag: 'jwt-clock-tolerance',
    def: '30',
    help: 'bearer JWTs: seconds of clock skew accepted (0..600)',
  },
  rbacFile: {
    env: 'APMATRIX_RBAC_FILE',
    flag: 'rbac-file',
    def: '',
    help: 'roles file (YAML or JSON): bindings of subjects, groups, token names to roles (reloaded on SIGHUP)',
  },
  insecureNoAuth: {
    env: 'APMATRIX_INSECURE_NO_AUTH',
    flag: 'insecure-no-auth',
    def: '',
    help: 'allow a non-loopback listen address without authentication (every caller is admin; logged at every start); 1 or true',
  },
  rateLimit: {
    env: 'APMATRIX_RATE_LIMIT',
    flag: 'rate-limit',
    def: '0',
    help: "changes per subject: 'N/s' (burst 2N) or 'N/s burst B'; 0 or off = no limit (docs/security.md (Limits))",
  },
  streamsPerSubject: {
    env: 'APMATRIX_STREAMS_PER_SUBJECT',
    flag: 'streams-per-subject',
    def: '32',
    help: 'open event streams (SSE and gRPC Watch together) per subject; 0 = no limit',
  },
  crashAt: {
    env: 'APMATRIX_CRASH_AT',
    flag: 'crash-at',
    def: '',
    help: 'TEST ONLY: point:n, SIGKILL at the n-th beforeBusWrite|afterBusWrite|beforeStatusWrite',
  },
} as const

export type SettingName = keyof typeof SETTINGS

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
const KERNELS: KernelProfileName[] = ['current-6.x', 'legacy-5.x', '6.19-override']
const HOST_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

function parseOrigins(name: string, v: string): string[] {
  const items = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  if (items.length > 64) throw new ConfigError(`${name}: at most 64 origins`)
  return items.map((o) => {
    const n = normaliseOrigin(o)
    if (n === undefined) throw new ConfigError(`${name}: '${clip(o, 200)}' is not an origin (http:// or https://, a host, an optional port, no path)`)
    return n
  })
}

function parseAddr(name: string, v: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(v)
  const port = m ? Number(m[2]) : NaN
  if (!m || port > 65535) throw new ConfigError(`${name}: '${v}' is not host:port (e.g. 127.0.0.1:8080)`)
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port }
}

/** The root of `name=sysfs:ROOT`: an absolute path, normalised; not `/` (that would be a whole file system, not a sysfs). */
function parseSysfsRoot(setting: string, host: string, root: string): string {
  if (!root.startsWith('/') || root.includes('\0'))
    throw new ConfigError(`${setting}: host ${host}: 'sysfs:${root.slice(0, 200)}' needs an absolute path (e.g. ${host}=sysfs:/sys)`)
  const norm = path.posix.normalize(root).replace(/(.)\/+$/, '$1')
  if (norm === '/') throw new ConfigError(`${setting}: host ${host}: the sysfs root cannot be '/' (the machine's sysfs is ${host}=sysfs:/sys)`)
  return norm
}

/**
 * Checks a hardware profile setting at start: a builtin name, or a JSON profile file that reads and
 * validates (src/emulator/PROFILES.md). ConfigError naming `setting` otherwise, so the process exits 2
 * with the name of the setting instead of failing later while the service starts.
 */
function checkProfile(setting: string, profile: string): void {
  if (isBuiltinProfile(profile)) return
  try {
    loadProfile(profile)
  } catch (e) {
    if (e instanceof ApmatrixError) throw new ConfigError(`${setting}: ${e.message}`)
    throw e
  }
}

function parseMs(name: string, v: string, min: number, max: number): number {
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max)
    throw new ConfigError(`${name}: '${v}' must be an integer number of milliseconds in ${min}..${max}`)
  return Number(v)
}

function parseCount(name: string, v: string, min: number, max: number): number {
  if (!/^\d{1,9}$/.test(v) || Number(v) < min || Number(v) > max) throw new ConfigError(`${name}: '${clip(v, 60)}' must be an integer in ${min}..${max}`)
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
    hosts = list.split(',').map((item): HostSpec => {
      const m = /^([^=@]+)(?:=(.+)|@(.+))?$/.exec(item.trim())
      const name = m?.[1] ?? ''
      if (!m || !HOST_NAME.test(name))
        throw new ConfigError(
          `${label('hosts')}: '${item.slice(0, 200)}' is not name=PROFILE, name@host:port or name=sysfs:/path (names: lowercase letters, digits, '-')`,
        )
      if (m[3]) {
        parseAddr(label('hosts'), m[3])
        return { name, kind: 'remote', addr: m[3] }
      }
      if (m[2]?.startsWith('sysfs:')) return { name, kind: 'sysfs', root: parseSysfsRoot(label('hosts'), name, m[2].slice('sysfs:'.length)) }
      const profile = m[2] ?? get('profile')
      checkProfile(m[2] === undefined ? label('profile') : `${label('hosts')}: host ${name}`, profile)
      return { name, kind: 'emulator', profile, kernel }
    })
    const names = new Set(hosts.map((h) => h.name))
    if (names.size !== hosts.length) throw new ConfigError(`${label('hosts')}: a host name appears twice`)
  } else if (get('emulatorAddr')) {
    parseAddr(label('emulatorAddr'), get('emulatorAddr'))
    hosts = [{ name: 'local', kind: 'remote', addr: get('emulatorAddr') }]
  } else {
    checkProfile(label('profile'), get('profile'))
    hosts = [{ name: 'local', kind: 'emulator', profile: get('profile'), kernel }]
  }

  let crashAt: ServiceConfig['crashAt']
  const c = get('crashAt')
  if (c) {
    const m = /^(beforeBusWrite|afterBusWrite|beforeStatusWrite):(\d+)$/.exec(c)
    if (!m || Number(m[2]) < 1)
      throw new ConfigError(`${label('crashAt')}: '${c}' is not point:n (point: beforeBusWrite, afterBusWrite, beforeStatusWrite; n >= 1)`)
    crashAt = { point: m[1] as 'beforeBusWrite', nth: Number(m[2]) }
  }

  const drainOnTimeout = get('drainOnTimeout')
  if (drainOnTimeout !== 'flush' && drainOnTimeout !== 'wait')
    throw new ConfigError(`${label('drainOnTimeout')}: '${clip(drainOnTimeout, 60)}' is not one of flush, wait`)

  const lockPath = get('sysfsLockPath')
  if (!lockPath.startsWith('/') || lockPath.endsWith('/'))
    throw new ConfigError(`${label('sysfsLockPath')}: '${lockPath.slice(0, 200)}' is not an absolute file path (default ${AP_CONFIG_LOCK_PATH})`)
  const bootIdFile = get('sysfsBootIdFile')
  if (bootIdFile !== '' && (!bootIdFile.startsWith('/') || bootIdFile.endsWith('/')))
    throw new ConfigError(`${label('sysfsBootIdFile')}: '${clip(bootIdFile, 200)}' is not an absolute file path`)
  const watch = get('sysfsWatch')
  if (!(WATCH_MODES as readonly string[]).includes(watch))
    throw new ConfigError(`${label('sysfsWatch')}: '${watch.slice(0, 60)}' is not one of ${WATCH_MODES.join(', ')}`)

  const http = parseAddr(label('http'), get('http'))
  const grpc = parseAddr(label('grpc'), get('grpc'))
  const security = loadSecurity(get, label, [http.host, grpc.host])
  const rate = parseRateLimit(get('rateLimit'))
  if (!rate) throw new ConfigError(`${label('rateLimit')}: '${clip(get('rateLimit'), 60)}' is not 0, off, N/s or 'N/s burst B' (N 1..100000, B 1..1000000)`)
  return {
    databaseUrl,
    http,
    corsOrigins: parseOrigins(label('corsOrigins'), get('corsOrigins')),
    grpc,
    security,
    logLevel: logLevel as ServiceConfig['logLevel'],
    hosts,
    replicaId: get('replicaId') || undefined,
    drainTimeoutMs: parseMs(label('drainTimeoutMs'), get('drainTimeoutMs'), 0, 3_600_000),
    drainOnTimeout,
    resyncMs: parseMs(label('resyncMs'), get('resyncMs'), 100, 86_400_000),
    leaseTtlMs: parseMs(label('leaseTtlMs'), get('leaseTtlMs'), 500, 600_000),
    storeTimeoutMs: parseMs(label('storeTimeoutMs'), get('storeTimeoutMs'), 100, 600_000),
    reconcileConcurrency: parseCount(label('reconcileConcurrency'), get('reconcileConcurrency'), 1, 64),
    readMaxStalenessMs: parseMs(label('readMaxStalenessMs'), get('readMaxStalenessMs'), 0, 600_000),
    sysfs: {
      lockPath,
      watch: watch as WatchMode,
      pollMs: parseMs(label('sysfsPollMs'), get('sysfsPollMs'), 50, 3_600_000),
      bootIdFile: bootIdFile || undefined,
    },
    lockWaitMs: parseMs(label('lockWaitMs'), get('lockWaitMs'), 0, 600_000),
    limits: { ...rate, streamsPerSubject: parseCount(label('streamsPerSubject'), get('streamsPerSubject'), 0, 100_000) },
    crashAt,
  }
}

/** True for an address only this machine can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}

function readable(setting: string, file: string): string {
  try {
    fs.accessSync(file, fs.constants.R_OK)
  } catch (e) {
    throw new ConfigError(`${setting}: '${clip(file, 200)}' cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`)
  }
  return file
}

/**
 * The security settings. Files are read once here so a bad one stops the start with its name; refuses
 * authentication without a roles file, and a non-loopback listen address without authentication unless
 * `--insecure-no-auth` (secure by default, docs/security.md).
 */
function loadSecurity(get: (k: SettingName) => string, label: (k: SettingName) => string, hosts: string[]): SecurityConfig {
  const cert = get('tlsCert')
  const key = get('tlsKey')
  const ca = get('tlsCa')
  if (!!cert !== !!key) throw new ConfigError(`${label(cert ? 'tlsKey' : 'tlsCert')}: TLS needs both a certificate and its key`)
  if (ca && !cert) throw new ConfigError(`${label('tlsCa')}: client certificates need TLS (${label('tlsCert')} and ${label('tlsKey')})`)
  const tls = cert
    ? { cert: readable(label('tlsCert'), cert), key: readable(label('tlsKey'), key), ca: ca ? readable(label('tlsCa'), ca) : undefined }
    : undefined

  const tokensFile = get('authTokensFile') || undefined
  if (tokensFile) {
    try {
      loadStaticTokens(tokensFile)
    } catch (e) {
      if (e instanceof TokensFileError) throw new ConfigError(`${label('authTokensFile')}: ${e.message}`)
      throw e
    }
  }

  let jwt: SecurityConfig['jwt']
  const jwks = get('jwtJwks')
  if (jwks) {
    const issuer = get('jwtIssuer')
    const audience = get('jwtAudience')
    if (!issuer) throw new ConfigError(`${label('jwtIssuer')}: required with ${label('jwtJwks')}`)
    if (!audience) throw new ConfigError(`${label('jwtAudience')}: required with ${label('jwtJwks')}`)
    if (/^http:\/\//.test(jwks)) throw new ConfigError(`${label('jwtJwks')}: a JWKS URL must be https://`)
    if (!/^https:\/\//.test(jwks)) readable(label('jwtJwks'), jwks)
    const algorithms = get('jwtAlgorithms')
      .split(',')
      .map((a) => a.trim())
      .filter(Boolean)
    const bad = algorithms.filter((a) => !(JWT_ALGORITHMS as readonly string[]).includes(a))
    if (!algorithms.length || bad.length)
      throw new ConfigError(
        `${label('jwtAlgorithms')}: '${clip(bad.join(','), 100)}' not accepted; use some of ${JWT_ALGORITHMS.join(', ')} (never none, never HMAC)`,
      )
    const tol = get('jwtClockTolerance')
    if (!/^\d{1,3}$/.test(tol) || Number(tol) > 600) throw new ConfigError(`${label('jwtClockTolerance')}: '${clip(tol, 20)}' must be 0..600 seconds`)
    jwt = { jwks, issuer, audience, algorithms, clockToleranceSec: Number(tol) }
  } else if (get('jwtIssuer') || get('jwtAudience')) {
    throw new ConfigError(`${label('jwtJwks')}: required with ${label(get('jwtIssuer') ? 'jwtIssuer' : 'jwtAudience')}`)
  }

  const rbacFile = get('rbacFile') || undefined
  if (rbacFile) {
    try {
      loadBindings(rbacFile)
    } catch (e) {
      if (e instanceof RbacFileError) throw new ConfigError(`${label('rbacFile')}: ${e.message}`)
      throw e
    }
  }
  const authEnabled = !!(tls?.ca || tokensFile || jwt)
  if (authEnabled && !rbacFile) throw new ConfigError(`${label('rbacFile')}: required when authentication is configured (who gets which role)`)
  if (!authEnabled && rbacFile)
    throw new ConfigError(
      `${label('rbacFile')}: set, but no authentication is configured (${label('tlsCa')}, ${label('authTokensFile')} or ${label('jwtJwks')})`,
    )
  const insecure = get('insecureNoAuth')
  if (!['', '0', '1', 'true', 'false'].includes(insecure))
    throw new ConfigError(`${label('insecureNoAuth')}: '${clip(insecure, 20)}' is not 1, true, 0 or false`)
  const insecureNoAuth = insecure === '1' || insecure === 'true'
  const exposed = hosts.filter((h) => !isLoopback(h))
  if (!authEnabled && exposed.length && !insecureNoAuth)
    throw new ConfigError(
      `refusing to listen on ${exposed.join(', ')} without authentication: configure ${label('tlsCa')}, ${label('authTokensFile')} or ${label('jwtJwks')} (with ${label('rbacFile')}), listen on a loopback address, or pass --insecure-no-auth`,
    )
  return { tls, tokensFile, jwt, rbacFile, insecureNoAuth, authEnabled }
}
