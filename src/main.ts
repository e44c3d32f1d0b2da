/**
 * The composition root: the only place that constructs things. `startService` wires configuration,
 * store, hosts, reconciler, service and transports, and returns a handle that shuts them down in order.
 */
import { SubjectLimits } from './auth/limits.js'
import fs from 'node:fs'
import os from 'node:os'
import { randomUUID } from 'node:crypto'
import pino, { type Logger as PinoLogger } from 'pino'
import { isLoopback, type ServiceConfig } from './config.js'
import { applyMigrations } from './store/apply-migrations.js'
import { createStore, type Store } from './store/store.js'
import { Retention } from './store/retention.js'
import { ensureSqliteFolder, parseDatabaseUrl, redact } from './store/config.js'
import { LocalEmulatedHost } from './hosts/local-emulated-host.js'
import { StaticHostRegistry, type ManagedHost } from './hosts/managed-host.js'
import { Reconciler, type ReconcilePoint } from './reconciler/reconciler.js'
import { ApmatrixService } from './service/index.js'
import { buildApp } from './transport/http/app.js'
import { ApmatrixMetrics } from './observability/metrics.js'
import { EventHub } from './events/hub.js'
import { startGrpcServer, type GrpcServer } from './transport/grpc/index.js'
import * as grpcJs from '@grpc/grpc-js'
import type { Server as HttpsServer } from 'node:https'
import { Authenticator } from './auth/authenticator.js'
import { JwtVerifier } from './auth/jwt.js'
import { loadBindings } from './auth/roles.js'
import { loadStaticTokens } from './auth/static-tokens.js'
import { TlsFiles } from './auth/tls.js'
import { LOCAL_SUBJECT } from './auth/identity.js'

/** A running service. */
export interface RunningService {
  /** `http://host:port` actually bound (a requested port 0 is resolved). */
  httpUrl: string
  /** `host:port` of the gRPC server actually bound. */
  grpcAddr: string
  store: Store
  reconciler: Reconciler
  hub: EventHub
  hosts: ManagedHost[]
  log: PinoLogger
  /** Graceful shutdown: stop accepting, finish the reconcile in flight, release leases, close the store. */
  close(): Promise<void>
  /**
   * Re-reads the TLS files, the static tokens and the roles file (what SIGHUP does). A file that does not
   * read or validate leaves the old contents in force and rejects with its error.
   */
  reload(): Promise<void>
}

/**
 * gRPC server credentials of the TLS files: a grpc-js certificate provider (identity, and the client CA
 * when there is one), so SIGHUP swaps the certificate and the CA (grpc-js 1.14.7's
 * createCertificateProviderServerCredentials takes the IDENTITY provider first, although its .d.ts names
 * that argument the CA provider).
 */
function grpcCredentials(tls: TlsFiles): grpcJs.ServerCredentials {
  return grpcJs.experimental.createCertificateProviderServerCredentials(tls, tls.mutual ? tls : null, tls.mutual)
}

/** Authentication of a configuration: the authenticator and the TLS files (undefined without TLS). */
export function buildSecurity(cfg: ServiceConfig): { auth: Authenticator; tls: TlsFiles | undefined } {
  const s = cfg.security
  const tls = s.tls ? new TlsFiles(s.tls) : undefined
  if (!s.authEnabled) return { auth: new Authenticator(), tls }
  const auth = new Authenticator({
    mtls: !!s.tls?.ca,
    ...(s.rbacFile ? { bindings: loadBindings(s.rbacFile) } : {}),
    ...(s.tokensFile ? { tokens: loadStaticTokens(s.tokensFile) } : {}),
    ...(s.jwt ? { jwt: new JwtVerifier(s.jwt) } : {}),
  })
  return { auth, tls }
}

/** Creates the pino logger of the process (JSON lines on stderr). */
export function createLogger(level: ServiceConfig['logLevel']): PinoLogger {
  return pino({ level, base: { service: 'apmatrix' } }, pino.destination(2))
}

function crashHook(cfg: ServiceConfig, log: PinoLogger): ((point: ReconcilePoint) => void) | undefined {
  const at = cfg.crashAt
  if (!at) return undefined
  let seen = 0
  log.warn({ crashAt: at }, 'APMATRIX_CRASH_AT is set: this process will SIGKILL itself (crash-safety test hook)')
  return (point) => {
    if (point !== at.point) return
    if (++seen === at.nth) {
      process.stderr.write(`apmatrix: crash hook: SIGKILL at ${point} #${seen}\n`)
      process.kill(process.pid, 'SIGKILL')
    }
  }
}

async function buildHosts(cfg: ServiceConfig, log: PinoLogger): Promise<ManagedHost[]> {
  const out: ManagedHost[] = []
  // Read once: grpc-js keeps a channel's credentials, so new files take effect at the next start.
  const tls = cfg.hostsTls
    ? { ca: fs.readFileSync(cfg.hostsTls.ca), cert: fs.readFileSync(cfg.hostsTls.cert), key: fs.readFileSync(cfg.hostsTls.key) }
    : undefined
  try {
    for (const h of cfg.hosts) {
      if (h.kind === 'emulator') out.push(new LocalEmulatedHost({ name: h.name, profile: h.profile, kernel: h.kernel }))
      else if (h.kind === 'remote') {
        const { connectRemoteHost } = await import('./hosts/connect-remote-host.js')
        out.push(await connectRemoteHost(h.name, h.addr, 10_000, { lockWaitMs: cfg.lockWaitMs, ...(tls ? { tls } : {}) }))
      } else out.push(await buildSysfsHost(cfg, h.name, h.root, log))
    }
  } catch (e) {
    for (const h of out) await h.close().catch(() => undefined)
    throw e
  }
  return out
}

/** A `sysfs` host: node:fs over `root`, the s390-tools lock, change detection; refuses a root without an AP bus. */
async function buildSysfsHost(cfg: ServiceConfig, name: string, root: string, log: PinoLogger): Promise<ManagedHost> {
  const [{ NodeSysfsAccess }, { ApConfigLock }, { SysfsHost }, { HostIdentity }, fs] = await Promise.all([
    import('./bus/node-sysfs-access.js'),
    import('./bus/ap-config-lock.js'),
    import('./hosts/sysfs-host.js'),
    import('./hosts/host-identity.js'),
    import('node:fs/promises'),
  ])
  try {
    await fs.access(`${root}/bus/ap/apmask`)
  } catch (e) {
    throw new Error(`host ${name}: ${root} is not a sysfs with an AP bus (no ${root}/bus/ap/apmask: ${(e as Error).message})`)
  }
  const hostLog = log.child({ host: name })
  const access = new NodeSysfsAccess({
    root,
    lock: new ApConfigLock({ path: cfg.sysfs.lockPath }),
    lockWaitMs: cfg.lockWaitMs,
    watch: { mode: cfg.sysfs.watch, pollMs: cfg.sysfs.pollMs, log: (line) => hostLog.info(line) },
  })
  return new SysfsHost(name, access, new HostIdentity({ root, ...(cfg.sysfs.bootIdFile ? { bootIdFile: cfg.sysfs.bootIdFile } : {}) }))
}

/** Starts everything the configuration names. Throws on a bad database or a host that cannot be reached. */
export async function startService(cfg: ServiceConfig, log: PinoLogger = createLogger(cfg.logLevel)): Promise<RunningService> {
  const db = parseDatabaseUrl(cfg.databaseUrl)
  if (db.provider === 'sqlite') ensureSqliteFolder(db)
  const migrated = await applyMigrations(cfg.databaseUrl)
  log.info({ database: redact(cfg.databaseUrl), applied: migrated.applied }, 'store migrated')
  // One registry for the process: the store, the reconciler, the work queue and the event hub feed it, the REST app serves it.
  // (The hub exists before the first scrape; the closure only reads it then.)
  const metrics = new ApmatrixMetrics({ events: () => hub.stats() })
  const store = await createStore(cfg.databaseUrl, { timeoutMs: cfg.storeTimeoutMs, observe: metrics.storeOperation })
  let hosts: ManagedHost[]
  try {
    hosts = await buildHosts(cfg, log)
  } catch (e) {
    // A host that cannot be reached stops the start; the store opened above must not outlive it.
    await store.close()
    throw e
  }
  const registry = new StaticHostRegistry(hosts)
  const hook = crashHook(cfg, log)
  // One fan-out of the store's ordered events for every stream (REST SSE, gRPC Watch).
  const hub = new EventHub({ source: store.events, maxLagEvents: cfg.watchMaxLag, onPollError: (err) => log.warn({ err: String(err) }, 'event poll failed') })
  await hub.start()
  const reconciler = new Reconciler({
    store,
    hosts: registry,
    holder: cfg.replicaId ?? `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
    resyncMs: cfg.resyncMs,
    leaseTtlMs: cfg.leaseTtlMs,
    drainTimeoutMs: cfg.drainTimeoutMs,
    drainOnTimeout: cfg.drainOnTimeout,
    metrics: metrics.reconciler(),
    log: log.child({ component: 'reconciler' }),
    hook: hook ? (point) => hook(point) : undefined,
    concurrency: cfg.reconcileConcurrency,
    onEvents: () => hub.notify(),
    // Read-your-writes for the statuses a pass stores: this replica's reads show them once the pass goes on.
    afterStatusWrite: () => service.refreshReadCache(),
  })
  // The service enqueues right after it commits; waking the hub there too delivers its events at once.
  const trigger = {
    enqueue: (host: string) => (reconciler.enqueue(host), hub.notify()),
    markRebooted: (host: string, bootId: string, message: string): Promise<void> => reconciler.markRebooted(host, bootId, message),
  }
  const service = new ApmatrixService({
    store,
    hosts: registry,
    reconciler: trigger,
    hub,
    readMaxStalenessMs: cfg.readMaxStalenessMs,
    idempotencyTtlMs: cfg.retention.idempotency.maxAgeMs,
    drainDefault: { timeoutMs: cfg.drainTimeoutMs, onTimeout: cfg.drainOnTimeout },
    limits: new SubjectLimits(cfg.limits),
  })
  for (const h of await service.syncHosts()) {
    log.info({ host: h.name, driver: h.driver, profile: h.profile, bootId: h.bootId }, 'host registered')
  }
  // Reads answer from memory: filled before the transports start.
  await service.startReadCache()
  const { auth, tls } = buildSecurity(cfg)
  if (!auth.enabled) {
    const exposed = [cfg.http.host, cfg.grpc.host].some((h) => !isLoopback(h))
    if (exposed)
      log.warn(
        { insecureNoAuth: true, subject: LOCAL_SUBJECT },
        `INSECURE: --insecure-no-auth: no authentication on a non-loopback address; every caller is ${LOCAL_SUBJECT} with role admin`,
      )
    else log.info({ subject: LOCAL_SUBJECT }, `no authentication configured (loopback only): every caller is ${LOCAL_SUBJECT} with role admin`)
  } else {
    log.info({ mtls: !!cfg.security.tls?.ca, tokens: !!cfg.security.tokensFile, jwt: !!cfg.security.jwt, tls: !!tls }, 'authentication on')
  }
  const app = buildApp({
    service,
    logger: log.child({ component: 'http' }),
    auth,
    ...(tls ? { https: tls.secureContextOptions() } : {}),
    corsOrigins: cfg.corsOrigins,
    metrics,
    // The Host check guards a service without authentication against DNS rebinding; callers that
    // authenticate may reach it by any name.
    requireLocalHost: !auth.enabled,
  })
  await app.listen({ host: cfg.http.host, port: cfg.http.port })
  const addr = app.server.address()
  const port = typeof addr === 'object' && addr ? addr.port : cfg.http.port
  const httpUrl = `${tls ? 'https' : 'http'}://${cfg.http.host.includes(':') ? `[${cfg.http.host}]` : cfg.http.host}:${port}`
  // Ready = the store answers and every host has a live lease (some replica reconciles it).
  const readiness = async (): Promise<boolean> => {
    try {
      await service.ping()
      const now = Date.now()
      for (const h of hosts) {
        const lease = await store.leases.get(h.name)
        if (!lease || lease.expiresAt.getTime() <= now) return false
      }
      return true
    } catch {
      return false
    }
  }
  let grpc: GrpcServer
  try {
    grpc = await startGrpcServer({
      service,
      addr: `${cfg.grpc.host.includes(':') ? `[${cfg.grpc.host}]` : cfg.grpc.host}:${cfg.grpc.port}`,
      logger: log.child({ component: 'grpc' }),
      readiness,
      healthIntervalMs: cfg.healthIntervalMs,
      auth,
      ...(tls ? { credentials: grpcCredentials(tls) } : {}),
    })
  } catch (e) {
    await app.close()
    throw e
  }
  const grpcAddr = `${cfg.grpc.host.includes(':') ? `[${cfg.grpc.host}]` : cfg.grpc.host}:${grpc.port}`
  reconciler.start()
  // Every replica prunes; batches of replicas sharing a database take turns (src/store/retention.ts).
  const retention = new Retention({
    store,
    events: cfg.retention.events,
    audit: cfg.retention.audit,
    journal: cfg.retention.journal,
    idempotency: { maxCount: cfg.retention.idempotency.maxCount },
    intervalMs: cfg.retention.intervalMs,
    onPass: (r) => {
      metrics.retentionPass(r)
      if (Object.values(r.deleted).some((n) => n > 0)) log.info({ deleted: r.deleted, floors: r.floors }, 'retention pass')
    },
    onError: (err) => log.warn({ err: String(err) }, 'retention pass failed'),
  })
  retention.start()
  log.info({ http: httpUrl, grpc: grpcAddr, replica: reconciler.holder }, 'apmatrix serving')

  let closing: Promise<void> | undefined
  // A write taken by another replica reaches this one through the shared event log: the hub sees every stored
  // event within its poll period, and a desired-state event of the service (not of a reconciler) on a host this
  // replica holds the lease of wakes its reconciler for that host. Without it such a change waited for the
  // holder's resync (APMATRIX_RESYNC_MS, default 30 s). Hosts nobody holds are found by the lease retries.
  const watchDesired = (): (() => void) =>
    hub.subscribe(
      { kinds: ['mdev', 'masks'] },
      (e) => {
        if (e.actor !== 'reconciler' && reconciler.holds(e.host)) reconciler.enqueue(e.host)
      },
      () => {
        if (closing) return
        // Ended (lag): events may have been missed, so every held host is looked at again.
        for (const h of reconciler.heldHosts()) reconciler.enqueue(h)
        stopWatchDesired = watchDesired()
      },
    )
  let stopWatchDesired = watchDesired()
  const reload = async () => {
    // Everything is read first: a bad file changes nothing.
    const s = cfg.security
    const next = auth.enabled
      ? { ...(s.rbacFile ? { bindings: loadBindings(s.rbacFile) } : {}), ...(s.tokensFile ? { tokens: loadStaticTokens(s.tokensFile) } : {}) }
      : null
    if (tls) {
      tls.reload()
      ;(app.server as HttpsServer).setSecureContext(tls.secureContextOptions())
    }
    if (next) auth.reload(next)
    log.info({ tls: !!tls, auth: auth.enabled }, 'security files reloaded')
  }
  return {
    httpUrl,
    grpcAddr,
    store,
    reconciler,
    hub,
    hosts,
    log,
    reload,
    close: () =>
      (closing ??= (async () => {
        // The app first: open event streams end with a resumable error instead of being cut.
        await retention.stop()
        await grpc.close()
        await app.close()
        service.stopReadCache()
        stopWatchDesired()
        await hub.close()
        await reconciler.stop()
        for (const h of hosts) await h.close()
        await store.close()
        log.info('apmatrix stopped')
      })()),
  }
}
