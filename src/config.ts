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
import { type LimitsConfig, parseRateLimit } from './auth/limits.js'
import type { RetentionPolicy } from './store/retention.js'

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
  /** How often gRPC health re-checks readiness (the store and the leases). */
  healthIntervalMs: number
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
  /**
   * Mutual TLS towards remote hosts (agents, remote emulators; docs/security.md (Agents and remote
   * emulators)): the CA their server certificates must chain to, and the client certificate and key the
   * service presents. Undefined: plaintext.
   */
  hostsTls: { ca: string; cert: string; key: string } | undefined
  /** Events an event watcher may fall behind before it is ended with a resumable error (EventHubOptions.maxLagEvents). */
  watchMaxLag: number
  /** Per-subject limits (src/auth/limits.ts, docs/security.md (Limits)); 0 = off. */
  limits: LimitsConfig
  /**
   * What the store keeps (src/store/retention.ts, docs/api.md (Events) Retention): counts and ages (ms), 0 = no
   * limit of that kind; idempotency keys live `idempotency.maxAgeMs` (> 0); pruned every `intervalMs`.
   */
  retention: RetentionConfig
  /** Test hook for crash-safety tests: `point:n` kills the process (SIGKILL) at the n-th time a reconcile reaches `point`. */
  crashAt: { point: 'beforeBusWrite' | 'afterBusWrite' | 'beforeStatusWrite'; nth: number } | undefined
}

/** See {@link ServiceConfig.retention}. */
export interface RetentionConfig {
  events: RetentionPolicy
  audit: RetentionPolicy
  journal: RetentionPolicy
  idempotency: RetentionPolicy
  intervalMs: number
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

export { ConfigError, isLoopback, readable, SETTINGS, type SettingName } from './settings.js'
import { ConfigError, isLoopback, readable, SETTINGS, type SettingName } from './settings.js'

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

/** Milliseconds per unit of a duration setting. */
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** A duration setting: `0`, or a whole number with a unit (`500ms`, `90s`, `30m`, `12h`, `7d`); its ms within min..max (0 always allowed when min is 0). */
function parseDuration(name: string, v: string, min: number, max: number): number {
  const m = /^(\d{1,9})(ms|s|m|h|d)?$/.exec(v.trim())
  const ms = m && (m[2] ? Number(m[1]) * DURATION_UNITS[m[2]]! : Number(m[1]) === 0 ? 0 : Number.NaN)
  if (ms === null || !(ms >= min && ms <= max))
    throw new ConfigError(
      `${name}: '${clip(v, 60)}' must be ${min === 0 ? '0 or ' : ''}a duration with a unit (ms, s, m, h, d: 90s, 12h, 7d) in ${fmtMs(min)}..${fmtMs(max)}`,
    )
  return ms
}

function fmtMs(ms: number): string {
  if (ms === 0) return '0'
  for (const u of ['d', 'h', 'm', 's'] as const) if (ms >= DURATION_UNITS[u]! && ms % DURATION_UNITS[u]! === 0) return `${ms / DURATION_UNITS[u]!}${u}`
  return `${ms}ms`
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
  const hostsTls = loadHostsTls(get, label)
  const rate = parseRateLimit(get('rateLimit'))
  if (!rate) throw new ConfigError(`${label('rateLimit')}: '${clip(get('rateLimit'), 60)}' is not 0, off, N/s or 'N/s burst B' (N 1..100000, B 1..1000000)`)
  return {
    databaseUrl,
    http,
    corsOrigins: parseOrigins(label('corsOrigins'), get('corsOrigins')),
    grpc,
    security,
    hostsTls,
    logLevel: logLevel as ServiceConfig['logLevel'],
    hosts,
    replicaId: get('replicaId') || undefined,
    drainTimeoutMs: parseMs(label('drainTimeoutMs'), get('drainTimeoutMs'), 0, 3_600_000),
    drainOnTimeout,
    resyncMs: parseMs(label('resyncMs'), get('resyncMs'), 100, 86_400_000),
    leaseTtlMs: parseMs(label('leaseTtlMs'), get('leaseTtlMs'), 500, 600_000),
    storeTimeoutMs: parseMs(label('storeTimeoutMs'), get('storeTimeoutMs'), 100, 600_000),
    healthIntervalMs: parseMs(label('healthIntervalMs'), get('healthIntervalMs'), 100, 600_000),
    reconcileConcurrency: parseCount(label('reconcileConcurrency'), get('reconcileConcurrency'), 1, 64),
    readMaxStalenessMs: parseMs(label('readMaxStalenessMs'), get('readMaxStalenessMs'), 0, 600_000),
    sysfs: {
      lockPath,
      watch: watch as WatchMode,
      pollMs: parseMs(label('sysfsPollMs'), get('sysfsPollMs'), 50, 3_600_000),
      bootIdFile: bootIdFile || undefined,
    },
    lockWaitMs: parseMs(label('lockWaitMs'), get('lockWaitMs'), 0, 600_000),
    watchMaxLag: parseCount(label('watchMaxLag'), get('watchMaxLag'), 1, 10_000_000),
    limits: { ...rate, streamsPerSubject: parseCount(label('streamsPerSubject'), get('streamsPerSubject'), 0, 100_000) },
    retention: loadRetention(get, label),
    crashAt,
  }
}

/** The TLS files towards remote hosts: all three or none, each readable (ConfigError naming the setting). */
function loadHostsTls(get: (k: SettingName) => string, label: (k: SettingName) => string): ServiceConfig['hostsTls'] {
  const keys = ['hostsTlsCa', 'hostsTlsCert', 'hostsTlsKey'] as const
  const given = keys.filter((k) => get(k) !== '')
  if (given.length === 0) return undefined
  if (given.length < 3)
    throw new ConfigError(
      `${keys
        .filter((k) => !given.includes(k))
        .map(label)
        .join(', ')}: required with ${given.map(label).join(', ')} (the hosts' CA, and the client certificate and key the service presents to them)`,
    )
  return {
    ca: readable(label('hostsTlsCa'), get('hostsTlsCa')),
    cert: readable(label('hostsTlsCert'), get('hostsTlsCert')),
    key: readable(label('hostsTlsKey'), get('hostsTlsKey')),
  }
}

/** Ten years: the longest retention age accepted. */
const MAX_RETENTION_MS = 3650 * 86_400_000

/** The retention settings (docs/api.md (Events) Retention). */
function loadRetention(get: (k: SettingName) => string, label: (k: SettingName) => string): RetentionConfig {
  const policy = (count: SettingName, age: SettingName, minAgeMs = 0): RetentionPolicy => ({
    maxCount: parseCount(label(count), get(count), 0, 1_000_000_000),
    maxAgeMs: parseDuration(label(age), get(age), minAgeMs, MAX_RETENTION_MS),
  })
  return {
    events: policy('eventRetentionCount', 'eventRetentionAge'),
    audit: policy('auditRetentionCount', 'auditRetentionAge'),
    journal: policy('journalRetentionCount', 'journalRetentionAge'),
    idempotency: policy('idempotencyRetentionCount', 'idempotencyRetentionAge', 1000),
    intervalMs: parseDuration(label('retentionInterval'), get('retentionInterval'), 1000, 86_400_000),
  }
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
