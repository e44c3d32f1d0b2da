/**
 * Entry of the `apmatrix` command (bin/apmatrix.mjs calls {@link run}): selects the verb, parses its
 * options strictly with node:util parseArgs, prints help (of a verb, or of a group such as `mdev`) and
 * version, and turns failures into exit codes and one-line messages (no stack traces unless
 * APMATRIX_DEBUG is set).
 */
import { parseArgs } from 'node:util'
import { ApmatrixError } from '../domain/errors.js'
import { appVersion } from '../version.js'
import { endQuietlyWhenOutputCloses } from './closed-output.js'
import { type CliCommand, type CliIo, EXIT, UsageError } from './command.js'
import { unknownVariableWarnings } from './environment.js'
import { commands } from './registry.js'
import { clip } from '../domain/text.js'

/** The version of package.json. */
export function version(): string {
  return appVersion()
}

/** The text of `apmatrix --help`. */
export function mainUsage(): string {
  const width = Math.max(...commands.map((c) => c.path.join(' ').length))
  const list = commands.map((c) => `  ${c.path.join(' ').padEnd(width)}  ${c.summary}`).join('\n')
  return `Usage: apmatrix <command> [options]

Commands:
${list}

Options:
  -h, --help     show this help (also: apmatrix help <command>, apmatrix <command> --help)
  -V, --version  print the version

Client verbs talk to the REST API at --server URL (or $APMATRIX_SERVER; default http://127.0.0.1:8080).

Exit codes: 0 success, 1 failure, 2 bad command line, 3 refused by admission (violations),
4 not found, 5 conflict (stale version, already exists), 6 server unreachable or unavailable,
7 timeout waiting for Ready (see src/cli/EXIT-CODES.md).
`
}

function processIo(): CliIo {
  endQuietlyWhenOutputCloses()
  return { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env }
}

/**
 * Runs the command line `argv` (without `node` and the script) and resolves to the exit code. First warns
 * on `io.stderr` about `APMATRIX_*` variables of `io.env` that apmatrix does not read (src/cli/environment.ts).
 * Never rejects: every failure is reported on `io.stderr`. With the process's own streams, a closed stdout
 * ends the process quietly with exit 0 (src/cli/closed-output.ts).
 */
export async function run(argv: string[], io: CliIo = processIo()): Promise<number> {
  for (const line of unknownVariableWarnings(io.env)) io.stderr.write(line)
  try {
    return await dispatch(argv, io)
  } catch (e) {
    if (e instanceof UsageError) {
      const helpCmd = e.command ? `apmatrix ${e.command.join(' ')} --help` : 'apmatrix --help'
      io.stderr.write(`apmatrix: ${e.message}\nRun '${helpCmd}' for usage.\n`)
      return EXIT.USAGE
    }
    const msg = e instanceof ApmatrixError ? e.message : `internal error: ${e instanceof Error ? e.message : String(e)}`
    io.stderr.write(`apmatrix: ${msg}\n`)
    if (io.env.APMATRIX_DEBUG && e instanceof Error && e.stack) io.stderr.write(`${e.stack}\n`)
    return EXIT.FAILURE
  }
}

async function dispatch(argv: string[], io: CliIo): Promise<number> {
  const first = argv[0]
  if (first === undefined) {
    io.stderr.write(mainUsage())
    return EXIT.USAGE
  }
  if (first === '-h' || first === '--help') {
    io.stdout.write(mainUsage())
    return EXIT.OK
  }
  if (first === '-V' || first === '--version') {
    io.stdout.write(`apmatrix ${version()}\n`)
    return EXIT.OK
  }
  if (first === 'help') {
    const words = argv.slice(1)
    if (words.length === 0) {
      io.stdout.write(mainUsage())
      return EXIT.OK
    }
    // `help mdev`: a group lists its verbs; `help mdev list`: the verb's own help. Extra words are a mistake.
    if (isGroup(words)) {
      io.stdout.write(groupUsage(words))
      return EXIT.OK
    }
    const { cmd, rest } = findCommand(words)
    if (rest.length > 0) throw new UsageError(`help: '${clip(rest.join(' '), 60)}' follows the command '${cmd.path.join(' ')}'`)
    io.stdout.write(cmd.help)
    return EXIT.OK
  }
  if (first.startsWith('-')) throw new UsageError(`unknown option '${first}'`)
  // `mdev --help`, `emulator -h`: the group's verbs.
  const group = argv.slice(0, -1)
  if ((argv.at(-1) === '--help' || argv.at(-1) === '-h') && isGroup(group)) {
    io.stdout.write(groupUsage(group))
    return EXIT.OK
  }
  const { cmd, rest } = findCommand(argv)
  let args: ReturnType<typeof parseOptions>
  try {
    args = parseOptions(cmd, rest)
  } catch (e) {
    // `--help` wins over a mistake elsewhere on the line (someone asking for help is mid-way through typing it).
    if (e instanceof UsageError && rest.slice(0, rest.includes('--') ? rest.indexOf('--') : undefined).includes('--help')) {
      io.stdout.write(cmd.help)
      return EXIT.OK
    }
    throw e
  }
  if (args.values.help === true) {
    io.stdout.write(cmd.help)
    return EXIT.OK
  }
  delete args.values.help
  try {
    return await cmd.run(args, io)
  } catch (e) {
    if (e instanceof UsageError && !e.command) e.command = cmd.path
    throw e
  }
}

/** The verbs whose path starts with `group` and is longer. */
function verbsUnder(group: readonly string[]): CliCommand[] {
  return commands.filter((c) => c.path.length > group.length && group.every((w, i) => c.path[i] === w))
}

/** True when `words` name a group of verbs (`mdev`, `emulator`) rather than a verb: a proper prefix of some paths, the path of none. */
export function isGroup(words: readonly string[]): boolean {
  return words.length > 0 && verbsUnder(words).length > 0 && !commands.some((c) => c.path.join(' ') === words.join(' '))
}

/** The text of `apmatrix <group> --help` and `apmatrix help <group>`: the group's verbs with their summaries. */
export function groupUsage(group: readonly string[]): string {
  const under = verbsUnder(group)
  const width = Math.max(...under.map((c) => c.path.join(' ').length))
  const name = group.join(' ')
  return `Usage: apmatrix ${name} <command> [options]

Commands:
${under.map((c) => `  ${c.path.join(' ').padEnd(width)}  ${c.summary}`).join('\n')}

Run 'apmatrix ${name} <command> --help' (or 'apmatrix help ${name} <command>') for the options of a command.
`
}

/** The verb whose path is the longest prefix of `words`; a usage error naming what was expected otherwise. */
function findCommand(words: string[]): { cmd: CliCommand; rest: string[] } {
  let best: CliCommand | undefined
  for (const c of commands) {
    if (c.path.every((w, i) => words[i] === w) && (!best || c.path.length > best.path.length)) best = c
  }
  if (best) return { cmd: best, rest: words.slice(best.path.length) }
  // The longest matched group (`emulator`) tells which subcommands would have been valid.
  let depth = 0
  while (commands.some((c) => c.path.length > depth + 1 && c.path.slice(0, depth + 1).every((w, i) => words[i] === w))) depth++
  const group = words.slice(0, depth)
  const shown = clip(words[depth] ?? '', 60)
  if (depth === 0) throw new UsageError(`unknown command '${shown}'`)
  const subs = commands.filter((c) => group.every((w, i) => c.path[i] === w)).map((c) => c.path[depth])
  const what = words[depth] === undefined ? 'missing subcommand' : `unknown subcommand '${shown}'`
  throw new UsageError(`${group.join(' ')}: ${what} (one of: ${[...new Set(subs)].join(', ')})`)
}

function parseOptions(cmd: CliCommand, rest: string[]) {
  try {
    const { values, positionals } = parseArgs({
      args: rest,
      options: { ...cmd.options, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: cmd.allowPositionals ?? false,
    })
    return { values: values as Record<string, string | boolean | (string | boolean)[] | undefined>, positionals }
  } catch (e) {
    // parseArgs reports unknown options, missing values and stray arguments as TypeErrors with ERR_PARSE_ARGS_* codes.
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) throw new UsageError(`${cmd.path.join(' ')}: ${(e as Error).message}`, cmd.path)
    throw e
  }
}
