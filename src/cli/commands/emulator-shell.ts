/**
 * `apmatrix emulator shell`: boots one emulated host and serves the line protocol of
 * src/cli/emulator-shell.ts on stdin/stdout until EOF.
 */
import { ApmatrixError } from '../../domain/errors.js'
import type { KernelProfileName } from '../../emulator/api.js'
import { createHost } from '../../emulator/host.js'
import { type CliCommand, EXIT, UsageError } from '../command.js'
import { MAX_ADVANCE_MS, MAX_LINE_BYTES, createShellSession, runShell } from '../emulator-shell.js'

/** The kernel profiles of docs/kernel-model.md §5; a Record so a new KernelProfileName is a compile error here. */
const KERNELS: Record<KernelProfileName, string> = {
  'current-6.x': 'mainline v6.10..v6.18 (default)',
  'legacy-5.x': '5.13..5.19 vfio_ap rules (EBUSY on remove in use, EPERM on create)',
  '6.19-override': 'current plus queue driver_override',
}

const DEFAULT_PROFILE = 'demo'

const help = `Usage: apmatrix emulator shell [--profile NAME|PATH] [--kernel PROFILE]

Boots one emulated s390 AP bus host (vfio_ap loaded) and reads commands from stdin, one per line.
Every command line gets exactly one line of JSON on stdout, in order. Blank lines and lines whose
first non-blank character is '#' are ignored (no output). EOF ends the shell (exit 0).

Options:
  --profile NAME|PATH  hardware profile: spec-fixture, demo, full, or a JSON profile file (default: ${DEFAULT_PROFILE})
  --kernel PROFILE     kernel behaviour: ${Object.keys(KERNELS).join(', ')} (default: current-6.x)
  -h, --help           this text

Plain commands (as root would do them in a shell):
  read PATH            -> {"ok":true,"value":"<attribute text, exactly, with its newline>"}
  write PATH VALUE     like 'echo VALUE > PATH': VALUE is the rest of the line after the one space
                       following PATH (may be empty or hold spaces) and a newline is appended
                       -> {"ok":true} or {"ok":false,"errno":"EINVAL","message":"..."}
  ls PATH              -> {"ok":true,"entries":[sorted names]}
  readlink PATH        -> {"ok":true,"target":"../../../../bus/ap/drivers/cex4queue"}

JSON commands (one object per line; unknown fields are rejected):
  {"op":"read","path":P}  {"op":"ls","path":P}  {"op":"readlink","path":P}
  {"op":"write","path":P,"value":V}           V is written exactly as given (no newline added)
  {"op":"guest-open","uuid":U,"guest":G}      a KVM guest opens the mdev (V-25)
  {"op":"guest-close","uuid":U}               the guest closes it (V-27)
  {"op":"aqic","uuid":U,"apqn":"05.0004","nib":N}   guest PQAP(AQIC) enable -> {"ok":true,"rc":0}
  {"op":"requests","apqn":"05.0004","count":N}      N crypto requests arrive -> {"ok":true,"accepted":N}
  {"op":"workload","apqn":"05.0004","perSecond":N}  a steady workload: one request every 1000/N virtual ms (0 stops)
  {"op":"stats","apqn":"05.0004"}             -> {"ok":true,"stats":{submitted,completed,flushed,rejected}}
  {"op":"hw","action":A,...,"notify":true|false}   change the machine (notify defaults to true: scan at once)
      A = config-off|config-on|checkstop|checkstop-clear (apid, optional apqi)
        | add-adapter (apid, optional rawType, type, mode, functions) | remove-adapter (apid)
        | add-domain|remove-domain (apqi, optional control) | set-mode (apid, mode: cca|ep11|accel)
  {"op":"scan"}                               one bus scan now
  {"op":"events"}                             events since the previous 'events' (the first call: all kept
                                              since boot): uevents, kernel log lines, guest APCB changes
  {"op":"advance","ms":N}                     move virtual time forward (0..${MAX_ADVANCE_MS}) -> {"ok":true,"now":T}
  {"op":"now"}                                -> {"ok":true,"now":T} (virtual ms since boot)

Virtual time: time moves ONLY with 'advance'; nothing happens while the shell waits for input.
Requests complete serviceMs (per adapter, default 5) of virtual time after they start, queue resets
take resetMs (default 2), and the periodic bus scan runs every config_time seconds of virtual time
(/sys/bus/ap/config_time, default 30) during an 'advance'.

Errors: a line that cannot be parsed (bad JSON, unknown op or verb, missing or ill-typed field, line
longer than ${MAX_LINE_BYTES} bytes) -> EINVAL; a failed sysfs operation -> the kernel's errno; anything else -> EIO.
The shell never exits on bad input. Full description: src/cli/EMULATOR-SHELL.md.
`

/** The `emulator shell` verb. */
export const emulatorShellCommand: CliCommand = {
  path: ['emulator', 'shell'],
  summary: 'boot an emulated AP bus host and drive it with a JSON line protocol on stdin/stdout',
  help,
  options: {
    profile: { type: 'string' },
    kernel: { type: 'string' },
  },
  async run(args, io) {
    const profile = (args.values.profile as string | undefined) ?? DEFAULT_PROFILE
    const kernel = args.values.kernel as string | undefined
    if (profile === '') throw new UsageError('--profile: a profile name or file path is required')
    if (kernel !== undefined && !Object.hasOwn(KERNELS, kernel)) {
      throw new UsageError(`--kernel: unknown kernel profile '${kernel}' (one of ${Object.keys(KERNELS).join(', ')})`)
    }
    let host
    try {
      host = createHost(kernel === undefined ? { profile } : { profile, kernel: kernel as KernelProfileName })
    } catch (e) {
      // A bad or missing profile (name or file) is a command-line mistake (exit 2), not a crash.
      if (e instanceof ApmatrixError && (e.code === 'INVALID_ARGUMENT' || e.code === 'NOT_FOUND')) throw new UsageError(`--profile: ${e.message}`)
      throw e
    }
    // EOF, or a reader that went away: both end the shell quietly, like every verb (src/cli/closed-output.ts).
    await runShell(createShellSession(host), io.stdin, io.stdout)
    return EXIT.OK
  },
}
