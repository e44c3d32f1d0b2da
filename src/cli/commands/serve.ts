/**
 * `apmatrix serve` (what `npm start` runs): the service with its embedded defaults (README (Configuration)).
 * Every setting is an environment variable and a flag; bad settings stop it at start with exit 2.
 */
import { ConfigError, SETTINGS, type SettingName } from '../../settings.js'
import { type CliCommand, EXIT, UsageError } from '../command.js'
import { keepServingOnStrayErrors } from '../process-guard.js'

const names = Object.keys(SETTINGS) as SettingName[]

const help = `Usage: apmatrix serve [options]

Runs the apmatrix service: the desired-state store, the reconciler, the REST and gRPC APIs, managing
one emulated host 'local' by default (SQLite under ./data/, REST on 127.0.0.1:8080, gRPC on 127.0.0.1:50051).
Stops gracefully on SIGTERM or SIGINT.

Options (each also an environment variable; flags win):
${names.map((k) => `  --${SETTINGS[k].flag.padEnd(18)} ${SETTINGS[k].env.padEnd(26)} ${SETTINGS[k].help}${SETTINGS[k].def ? ` (default ${SETTINGS[k].def})` : ''}`).join('\n')}
  -h, --help`

/** How long a stopped service waits for its last connections to go before it exits anyway. */
const LINGER_MS = 2_000

/**
 * After the graceful stop: the process ends when nothing holds its event loop. A client that never reads can
 * hold it for ever: an HTTP/2 session closed gracefully (GOAWAY, then the socket's end) keeps its socket until
 * the peer closes its side, which a stuck or paused client never does (found by the gRPC fuzz run: SIGTERM
 * done, the process still there 100 s later). A timer that does not itself hold the loop ends the process
 * then, with the exit code the command set.
 */
function exitAfterLingeringConnections(log: { warn(o: object, msg: string): void; flush?(): void }): void {
  setTimeout(() => {
    log.warn({ waitedMs: LINGER_MS }, 'connections still open after the stop (a client that does not close its side); exiting')
    log.flush?.()
    process.exit()
  }, LINGER_MS).unref()
}

/** The `serve` verb. */
export const serveCommand: CliCommand = {
  path: ['serve'],
  summary: 'run the service (REST and gRPC APIs, reconciler) on the embedded defaults',
  help,
  // --insecure-no-auth is a switch; every other setting takes a value.
  options: Object.fromEntries(names.map((k) => [SETTINGS[k].flag, { type: k === 'insecureNoAuth' ? ('boolean' as const) : ('string' as const) }])),
  async run(args, io) {
    const flags: Partial<Record<SettingName, string>> = {}
    for (const k of names) {
      const v = args.values[SETTINGS[k].flag]
      if (typeof v === 'string') flags[k] = v
      else if (v === true) flags[k] = 'true'
    }
    // The loader (TypeBox, YAML, jose) and the service load only when the verb runs, not for --help.
    const { loadConfig } = await import('../../config.js')
    let cfg
    try {
      cfg = loadConfig(flags, io.env)
    } catch (e) {
      if (e instanceof ConfigError) throw new UsageError(e.message)
      throw e
    }
    const { startService, createLogger } = await import('../../main.js')
    const log = createLogger(cfg.logLevel)
    let svc
    try {
      svc = await startService(cfg, log)
    } catch (e) {
      io.stderr.write(`apmatrix: cannot start: ${e instanceof Error ? e.message : String(e)}\n`)
      log.flush?.()
      return EXIT.FAILURE
    }
    const guard = keepServingOnStrayErrors(log)
    io.stdout.write(`apmatrix serving REST on ${svc.httpUrl}\napmatrix serving gRPC on ${svc.grpcAddr}\n`)
    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        log.info({ signal }, 'shutting down')
        process.off('SIGTERM', onTerm)
        process.off('SIGINT', onInt)
        void svc.close().then(
          () => {
            guard.remove()
            exitAfterLingeringConnections(log)
            resolve()
          },
          (e) => {
            log.error({ err: String(e) }, 'shutdown failed')
            resolve()
          },
        )
      }
      const onTerm = () => stop('SIGTERM')
      const onInt = () => stop('SIGINT')
      process.on('SIGTERM', onTerm)
      process.on('SIGINT', onInt)
      // SIGHUP: re-read TLS files, static tokens and the roles file (a bad file keeps the old ones).
      process.on(
        'SIGHUP',
        () => void svc.reload().catch((e: unknown) => log.error({ err: String(e) }, 'reload failed; the previous security files stay in force')),
      )
    })
    return EXIT.OK
  },
}
