/**
 * `apmatrix emulator serve`: boots one emulated host in this process and serves it over gRPC
 * (proto/apmatrix/hostbus/v1/hostbus.proto and emulator/v1/emulator.proto) until SIGTERM or SIGINT,
 * so the "kernel" state outlives any client, as a real machine's does. With `--mount DIR` the same host
 * is also a FUSE filesystem at DIR that plays `/sys`, for real tools (mdevctl, a shell) and for the
 * `sysfs` host driver.
 */
import { parseArgs } from 'node:util'
import { ApmatrixError } from '../../domain/errors.js'
import type { KernelProfileName } from '../../emulator/api.js'
import type { EmulatorClock, EmulatorServer } from '../../emulator-remote/server.js'
import { FuseUnavailableError, loadFuseBinding } from '../../emulator/fuse/fuse-binding.js'
import { type SysfsMount, checkFuseDevice, mountSysfs } from '../../emulator/fuse/sysfs-mount.js'
import { type CliArgs, type CliCommand, type CliIo, EXIT, UsageError } from '../command.js'
import { clip } from '../../domain/text.js'
import { ConfigError } from '../../settings.js'
import { EMULATOR_TLS_SETTINGS, loadServerTls, type TlsSettingName } from '../../hostbus/tls-settings.js'
import { keepServingOnStrayErrors } from '../process-guard.js'
import { stopSignal } from '../stop-signal.js'

const KERNELS: readonly KernelProfileName[] = ['current-6.x', 'legacy-5.x', '6.19-override']
const CLOCKS: readonly EmulatorClock[] = ['realtime', 'manual']
const DEFAULT_ADDR = '127.0.0.1:50151'
const DEFAULT_PROFILE = 'demo'
const MAX_TICK_MS = 60_000

const TLS_NAMES = Object.keys(EMULATOR_TLS_SETTINGS) as TlsSettingName[]

const help = `Usage: apmatrix emulator serve [--addr HOST:PORT] [--profile NAME|PATH] [--kernel PROFILE] [--clock realtime|manual] [--tick-ms N] [--mount DIR] [--boot-id-file FILE] [TLS options]

Boots one emulated s390 AP bus host and serves it over gRPC until SIGTERM or SIGINT: its sysfs face
(apmatrix.hostbus.v1.HostBus, as an apmatrix agent serves a real host) and its controls
(apmatrix.emulator.v1.EmulatorControl), plus grpc.health.v1 and server reflection. The host lives as
long as this process: clients (the apmatrix service) may crash and reconnect without losing its state.

With --mount DIR the same host is also a filesystem at DIR that plays /sys (DIR/bus/ap/apmask,
DIR/devices/vfio_ap/matrix/...), with the kernel's texts, modes and errnos: a write(2) is one store
call, so 'echo 5 > DIR/devices/vfio_ap/matrix/UUID/assign_adapter' fails as the kernel would. Writes
through DIR go into the write log (origin fuse). It needs FUSE: the optional npm package fuse-native,
/dev/fuse and root (mounting). DIR is created if missing (it must be empty); a stale mount left by a killed
server is cleared first; SIGTERM/SIGINT unmount it. To let a tool use it as /sys, bind it in a
private mount namespace:  unshare -m sh -c 'mount --bind DIR /sys && mdevctl types'

When ready it prints one line on stdout:
  apmatrix emulator listening on HOST:PORT (profile NAME, kernel PROFILE, bootId UUID)
With --mount, this line comes after the mount is up and is preceded by:
  apmatrix emulator sysfs mounted at DIR
Log lines go to stderr.

Options:
  --addr HOST:PORT     listen address; port 0 picks a free port (default: ${DEFAULT_ADDR})
  --profile NAME|PATH  hardware profile: spec-fixture, demo, full, or a JSON profile file (default: ${DEFAULT_PROFILE})
  --kernel PROFILE     kernel behaviour: ${KERNELS.join(', ')} (default: current-6.x)
  --clock MODE         realtime: virtual time follows wall time (default);
                       manual: time moves only through the Advance call (deterministic tests)
  --tick-ms N          realtime clock tick in milliseconds, 1..${MAX_TICK_MS} (default: 100)
  --mount DIR          also serve the host's sysfs as a FUSE filesystem at DIR
  --boot-id-file FILE  keep the current boot id in FILE (rewritten at every Reboot): what
                       /proc/sys/kernel/random/boot_id is on a real host, for the sysfs driver
                       (APMATRIX_SYSFS_BOOT_ID_FILE) or an agent (--boot-id-file) behind the mount
  -h, --help           this text

Mutual TLS (each also an environment variable; flags win): only a client presenting a certificate
signed by --tls-ca (the service's, configured there with APMATRIX_HOSTS_TLS_*) gets a connection. Any
listen address but loopback needs it, or --insecure-no-tls.
${TLS_NAMES.map((k) => `  --${EMULATOR_TLS_SETTINGS[k].flag.padEnd(17)} ${EMULATOR_TLS_SETTINGS[k].env.padEnd(34)} ${EMULATOR_TLS_SETTINGS[k].help}`).join('\n')}

Environment: APMATRIX_FUSE_DEVICE  the FUSE device checked before mounting (default /dev/fuse).

Exit codes: 0 after a clean stop on SIGTERM/SIGINT, 1 when the address cannot be bound (or the mount
cannot be detached at stop), 2 bad options, 69 when --mount cannot mount (no FUSE, no permission, a
busy or non-empty directory: the message says why).
`

/** The listen host of `addr` (HOST:PORT); UsageError otherwise. */
function checkAddr(addr: string): string {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(addr)
  if (!m || Number(m[2]) > 65535) throw new UsageError(`--addr: '${clip(addr, 100)}' is not HOST:PORT (port 0..65535)`)
  return m[1]!
}

async function serve(args: CliArgs, io: CliIo): Promise<number> {
  const addr = (args.values.addr as string | undefined) ?? DEFAULT_ADDR
  const listenHost = checkAddr(addr)
  const profile = (args.values.profile as string | undefined) ?? DEFAULT_PROFILE
  if (profile === '') throw new UsageError('--profile: a profile name or file path is required')
  const kernel = args.values.kernel as string | undefined
  if (kernel !== undefined && !KERNELS.includes(kernel as KernelProfileName)) {
    throw new UsageError(`--kernel: unknown kernel profile '${clip(kernel, 60)}' (one of ${KERNELS.join(', ')})`)
  }
  const clock = (args.values.clock as string | undefined) ?? 'realtime'
  if (!CLOCKS.includes(clock as EmulatorClock)) throw new UsageError(`--clock: '${clip(clock, 60)}' is not one of ${CLOCKS.join(', ')}`)
  const tickText = (args.values['tick-ms'] as string | undefined) ?? '100'
  const tickMs = Number(tickText)
  if (!/^\d+$/.test(tickText) || tickMs < 1 || tickMs > MAX_TICK_MS)
    throw new UsageError(`--tick-ms: expected an integer 1..${MAX_TICK_MS}, got '${clip(tickText, 20)}'`)

  const bootIdFile = args.values['boot-id-file'] as string | undefined
  if (bootIdFile !== undefined && !bootIdFile.startsWith('/')) throw new UsageError(`--boot-id-file: '${clip(bootIdFile, 100)}' is not an absolute file path`)
  let tlsConfig
  try {
    const flag = (k: TlsSettingName): string | undefined => {
      const v = args.values[EMULATOR_TLS_SETTINGS[k].flag]
      return v === true ? 'true' : typeof v === 'string' ? v : undefined
    }
    tlsConfig = loadServerTls(
      (k) => flag(k) ?? io.env[EMULATOR_TLS_SETTINGS[k].env] ?? '',
      (k) => `--${EMULATOR_TLS_SETTINGS[k].flag} / ${EMULATOR_TLS_SETTINGS[k].env}`,
      listenHost,
    )
  } catch (e) {
    if (e instanceof ConfigError) throw new UsageError(e.message)
    throw e
  }
  const mountDir = args.values.mount as string | undefined
  if (mountDir === '') throw new UsageError('--mount: a directory is required')
  const fuseDevice = io.env.APMATRIX_FUSE_DEVICE || '/dev/fuse'
  const noFuse = (e: FuseUnavailableError): number => {
    io.stderr.write(`apmatrix emulator serve: --mount ${mountDir}: cannot mount the emulator's sysfs: ${e.message}\n`)
    return EXIT.FUSE_UNAVAILABLE
  }
  if (mountDir !== undefined) {
    // Before anything is bound: a machine without FUSE fails at once, with the reason.
    try {
      loadFuseBinding()
      checkFuseDevice(fuseDevice)
    } catch (e) {
      if (e instanceof FuseUnavailableError) return noFuse(e)
      throw e
    }
  }

  // Listen for signals before binding, so a stop that arrives during start-up is not lost.
  const stop = stopSignal()
  const log = (line: string): void => void io.stderr.write(`${new Date().toISOString()} ${line}\n`)
  if (tlsConfig.insecureNoTls && !tlsConfig.tls)
    log(`INSECURE: --insecure-no-tls: ${addr} is served without TLS; whoever reaches it drives and reboots this emulated host`)
  // The gRPC server (grpc-js, the emulator) loads only when the verb runs, not for --help.
  const { startEmulatorServer } = await import('../../emulator-remote/server.js')
  let server: EmulatorServer
  try {
    server = await startEmulatorServer({
      addr,
      profile,
      clock: clock as EmulatorClock,
      tickMs,
      log,
      ...(kernel ? { kernel: kernel as KernelProfileName } : {}),
      ...(bootIdFile ? { bootIdFile } : {}),
      ...(tlsConfig.tls ? { tls: tlsConfig.tls } : {}),
    })
  } catch (e) {
    stop.cancel()
    // A bad profile name or file is a command-line mistake (exit 2); a bind failure is a runtime one (exit 1).
    if (e instanceof ApmatrixError && (e.code === 'INVALID_ARGUMENT' || e.code === 'NOT_FOUND')) throw new UsageError(`--profile: ${e.message}`)
    throw new ApmatrixError('UNAVAILABLE', `emulator serve: cannot listen on ${addr}: ${e instanceof Error ? e.message : String(e)}`, { cause: e })
  }
  let mount: SysfsMount | undefined
  if (mountDir !== undefined) {
    try {
      mount = await mountSysfs(mountDir, server.localSysfs, { device: fuseDevice, log })
    } catch (e) {
      stop.cancel()
      await server.close()
      if (e instanceof FuseUnavailableError) return noFuse(e)
      throw e
    }
    io.stdout.write(`apmatrix emulator sysfs mounted at ${mount.dir}\n`)
  }
  const i = server.info()
  io.stdout.write(`apmatrix emulator listening on ${server.address} (profile ${i.profile}, kernel ${i.kernel}, bootId ${i.bootId})\n`)
  const guard = keepServingOnStrayErrors({ error: (obj, msg) => log(`${msg ?? 'error'}: ${JSON.stringify(obj)}`) })
  const sig = await stop.next
  guard.remove()
  log(`${sig}: stopping`)
  let code: number = EXIT.OK
  if (mount) {
    // First the mount, so that no file operation waits on a host that is going away.
    try {
      await mount.unmount()
    } catch (e) {
      log(`cannot unmount ${mount.dir}: ${(e as Error).message}`)
      code = EXIT.FAILURE
    }
  }
  await server.close()
  return code
}

/** The `emulator serve` verb (for src/cli/registry.ts). */
export const emulatorServeCommand: CliCommand = {
  path: ['emulator', 'serve'],
  summary: 'run one emulated AP bus host in its own process, served over gRPC',
  help,
  options: {
    addr: { type: 'string' },
    profile: { type: 'string' },
    kernel: { type: 'string' },
    clock: { type: 'string' },
    'tick-ms': { type: 'string' },
    mount: { type: 'string' },
    'boot-id-file': { type: 'string' },
    ...Object.fromEntries(TLS_NAMES.map((k) => [EMULATOR_TLS_SETTINGS[k].flag, { type: k === 'insecureNoTls' ? ('boolean' as const) : ('string' as const) }])),
  },
  run: serve,
}

function processIo(): CliIo {
  return { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env }
}

/**
 * Runs `apmatrix emulator serve` with `argv` (the words after `emulator serve`) and resolves to the exit
 * code: 0 after SIGTERM/SIGINT, 1 when the address cannot be bound, 2 for bad options. Never rejects.
 */
export async function emulatorServe(argv: string[], io: CliIo = processIo()): Promise<number> {
  const fail = (msg: string, code: number): number => {
    io.stderr.write(`apmatrix emulator serve: ${msg}\n${code === EXIT.USAGE ? "Run 'apmatrix emulator serve --help' for usage.\n" : ''}`)
    return code
  }
  let args: CliArgs
  try {
    const parsed = parseArgs({
      args: argv,
      options: { ...emulatorServeCommand.options, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    })
    args = { values: parsed.values as CliArgs['values'], positionals: parsed.positionals }
  } catch (e) {
    return fail((e as Error).message, EXIT.USAGE)
  }
  if (args.values.help === true) {
    io.stdout.write(help)
    return EXIT.OK
  }
  delete args.values.help
  try {
    return await serve(args, io)
  } catch (e) {
    if (e instanceof UsageError) return fail(e.message, EXIT.USAGE)
    return fail(e instanceof Error ? e.message : String(e), EXIT.FAILURE)
  }
}
