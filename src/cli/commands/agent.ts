/**
 * `apmatrix agent`: serves one LPAR's sysfs to the apmatrix service over gRPC (src/agent/agent-server.ts)
 * until SIGTERM or SIGINT. Every option is also an environment variable (flags win).
 */
import { AGENT_SETTINGS, loadAgentConfig, type AgentSettingName } from '../../agent/agent-config.js'
import { ApmatrixError } from '../../domain/errors.js'
import { ConfigError } from '../../settings.js'
import { type CliCommand, EXIT, UsageError } from '../command.js'
import { stopSignal } from '../stop-signal.js'

const names = Object.keys(AGENT_SETTINGS) as AgentSettingName[]

const help = `Usage: apmatrix agent [--addr HOST:PORT] [--sysfs-root DIR] [--lock-path FILE] [--poll-ms N] [--watch MODE] [options]

Serves this LPAR's sysfs (the AP bus and vfio_ap parts) to the apmatrix service over gRPC
(service apmatrix.hostbus.v1.HostBus, plus grpc.health.v1 and server reflection) until SIGTERM or
SIGINT. The service manages it as APMATRIX_HOSTS=lpar1@HOST:PORT (driver 'agent'). Writes are one
write(2) each, fenced by the service's lease tokens, and made under the s390-tools AP configuration lock
(chzdev and mdevctl's ap-check take it too); kernel uevents (udevadm monitor) or a poll tell the service
when something changed.

With --tls-cert, --tls-key and --tls-ca the agent speaks mutual TLS: only a client presenting a
certificate signed by the --tls-ca CA (and, with --tls-client-name, carrying one of those names: the
service's) gets a connection. Any listen address but loopback needs it, or --insecure-no-tls.

When ready it prints one line on stdout:
  apmatrix agent listening on HOST:PORT (sysfs DIR, machine ID, bootId ID)
Log lines go to stderr.

Options (each also an environment variable; flags win):
${names.map((k) => `  --${AGENT_SETTINGS[k].flag.padEnd(17)} ${AGENT_SETTINGS[k].env.padEnd(32)} ${AGENT_SETTINGS[k].help}${AGENT_SETTINGS[k].def ? ` (default ${AGENT_SETTINGS[k].def})` : ''}`).join('\n')}
  -h, --help

Exit codes: 0 after a clean stop on SIGTERM/SIGINT, 1 when the root is not a sysfs with an AP bus or the
address cannot be bound, 2 bad options.
`

/** The `agent` verb (for src/cli/registry.ts). */
export const agentCommand: CliCommand = {
  path: ['agent'],
  summary: "serve this LPAR's sysfs to the apmatrix service over gRPC (one agent per host)",
  help,
  // --insecure-no-tls is a switch; every other setting takes a value.
  options: Object.fromEntries(names.map((k) => [AGENT_SETTINGS[k].flag, { type: k === 'insecureNoTls' ? ('boolean' as const) : ('string' as const) }])),
  async run(args, io) {
    const flags: Partial<Record<AgentSettingName, string>> = {}
    for (const k of names) {
      const v = args.values[AGENT_SETTINGS[k].flag]
      if (typeof v === 'string') flags[k] = v
      else if (v === true) flags[k] = 'true'
    }
    let cfg
    try {
      cfg = loadAgentConfig(flags, io.env)
    } catch (e) {
      if (e instanceof ConfigError) throw new UsageError(e.message)
      throw e
    }
    // Listen for signals before binding, so a stop that arrives during start-up is not lost.
    const stop = stopSignal()
    const log = (line: string): void => void io.stderr.write(`${new Date().toISOString()} ${line}\n`)
    if (cfg.insecureNoTls && !cfg.tls)
      log(`INSECURE: --insecure-no-tls: ${cfg.addr} is served without TLS; whoever reaches it can change this host's AP configuration`)
    // The gRPC server loads only when the verb runs, not for --help.
    const { startAgentServer } = await import('../../agent/agent-server.js')
    let server
    try {
      server = await startAgentServer({
        addr: cfg.addr,
        sysfsRoot: cfg.sysfsRoot,
        lockPath: cfg.lockPath,
        watch: cfg.watch,
        pollMs: cfg.pollMs,
        lockMaxHoldMs: cfg.lockMaxHoldMs,
        log,
        ...(cfg.tls ? { tls: cfg.tls } : {}),
        ...(cfg.bootIdFile ? { bootIdFile: cfg.bootIdFile } : {}),
      })
    } catch (e) {
      stop.cancel()
      throw new ApmatrixError('UNAVAILABLE', `agent: cannot start on ${cfg.addr}: ${e instanceof Error ? e.message : String(e)}`, { cause: e })
    }
    const i = await server.info()
    io.stdout.write(`apmatrix agent listening on ${server.address} (sysfs ${cfg.sysfsRoot}, machine ${i.machineId}, bootId ${i.bootId})\n`)
    const sig = await stop.next
    log(`${sig}: stopping`)
    await server.close()
    return EXIT.OK
  },
}
