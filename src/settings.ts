/**
 * The settings of `apmatrix serve` (README (Configuration)): environment name, flag, default and help
 * line of each. Kept apart from the loader (config.ts) so that every `apmatrix` verb can read the table
 * (help text, unknown-variable warnings) without loading what validation needs (TypeBox, YAML, jose).
 */

import fs from 'node:fs'
import { JWT_ALGORITHMS } from './auth/jwt-algorithms.js'
import { clip } from './domain/text.js'
import { AP_CONFIG_LOCK_PATH } from './bus/ap-config-lock.js'
import { WATCH_MODES } from './bus/change-watcher.js'

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
  hostsTlsCa: {
    env: 'APMATRIX_HOSTS_TLS_CA',
    flag: 'hosts-tls-ca',
    def: '',
    help: "PEM CA of the agents' and remote emulators' server certificates: set = every name@host:port host (and --emulator-addr) is reached over mutual TLS",
  },
  hostsTlsCert: {
    env: 'APMATRIX_HOSTS_TLS_CERT',
    flag: 'hosts-tls-cert',
    def: '',
    help: 'PEM client certificate the service presents to agents and remote emulators (their --tls-ca signed it)',
  },
  hostsTlsKey: { env: 'APMATRIX_HOSTS_TLS_KEY', flag: 'hosts-tls-key', def: '', help: 'PEM private key of --hosts-tls-cert' },
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
  healthIntervalMs: {
    env: 'APMATRIX_HEALTH_INTERVAL_MS',
    flag: 'health-interval-ms',
    def: '2000',
    help: 'how often gRPC health checks the store and the leases (NOT_SERVING at most this long after an outage began)',
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
  watchMaxLag: {
    env: 'APMATRIX_WATCH_MAX_LAG',
    flag: 'watch-max-lag',
    def: '100000',
    help: 'an event watcher (SSE, gRPC Watch) that stopped keeping up is ended with a resumable error once this many events behind (1..10000000)',
  },
  eventRetentionCount: {
    env: 'APMATRIX_EVENT_RETENTION_COUNT',
    flag: 'event-retention-count',
    def: '100000',
    help: 'events kept at most (the newest); 0 = no count limit. A watch from an older position gets 410 GONE / OUT_OF_RANGE',
  },
  eventRetentionAge: {
    env: 'APMATRIX_EVENT_RETENTION_AGE',
    flag: 'event-retention-age',
    def: '7d',
    help: 'events kept at most this long (a duration: 90s, 30m, 12h, 7d); 0 = no age limit',
  },
  auditRetentionCount: {
    env: 'APMATRIX_AUDIT_RETENTION_COUNT',
    flag: 'audit-retention-count',
    def: '1000000',
    help: 'audit records kept at most (the newest); 0 = no count limit',
  },
  auditRetentionAge: {
    env: 'APMATRIX_AUDIT_RETENTION_AGE',
    flag: 'audit-retention-age',
    def: '90d',
    help: 'audit records kept at most this long (a duration); 0 = no age limit',
  },
  journalRetentionCount: {
    env: 'APMATRIX_JOURNAL_RETENTION_COUNT',
    flag: 'journal-retention-count',
    def: '10000',
    help: 'finished reconcile journal entries kept at most (planned ones are never removed); 0 = no count limit',
  },
  journalRetentionAge: {
    env: 'APMATRIX_JOURNAL_RETENTION_AGE',
    flag: 'journal-retention-age',
    def: '7d',
    help: 'finished reconcile journal entries kept at most this long (a duration); 0 = no age limit',
  },
  idempotencyRetentionCount: {
    env: 'APMATRIX_IDEMPOTENCY_RETENTION_COUNT',
    flag: 'idempotency-retention-count',
    def: '100000',
    help: 'idempotency keys kept at most (those expiring first go first; a request repeated with an evicted key runs again); 0 = no count limit',
  },
  idempotencyRetentionAge: {
    env: 'APMATRIX_IDEMPOTENCY_RETENTION_AGE',
    flag: 'idempotency-retention-age',
    def: '24h',
    help: 'how long an Idempotency-Key is remembered (a duration, at least 1s)',
  },
  retentionInterval: {
    env: 'APMATRIX_RETENTION_INTERVAL',
    flag: 'retention-interval',
    def: '60s',
    help: 'how often retention prunes the store, in batches that never hold writers up for long (a duration, 1s..1d)',
  },
  crashAt: {
    env: 'APMATRIX_CRASH_AT',
    flag: 'crash-at',
    def: '',
    help: 'TEST ONLY: point:n, SIGKILL at the n-th beforeBusWrite|afterBusWrite|beforeStatusWrite',
  },
} as const

export type SettingName = keyof typeof SETTINGS

/** True for an address only this machine can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}

/** `file` when this process may read it; ConfigError naming `setting` and the reason otherwise. */
export function readable(setting: string, file: string): string {
  try {
    fs.accessSync(file, fs.constants.R_OK)
  } catch (e) {
    throw new ConfigError(`${setting}: '${clip(file, 200)}' cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`)
  }
  return file
}
