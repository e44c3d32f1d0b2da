/**
 * The shape every `apmatrix` verb implements. A verb is one file under src/cli/commands/ that exports
 * one {@link CliCommand}; src/cli/registry.ts lists them. main.ts owns parsing, help and exit codes,
 * so a verb only declares its options and runs.
 */
import type { ParseArgsConfig } from 'node:util'

/** The process streams a command talks to (real ones in the binary, in-memory ones in tests). */
export interface CliIo {
  stdin: NodeJS.ReadableStream
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream
  env: NodeJS.ProcessEnv
}

/** Options and positionals as node:util parseArgs returns them (strict mode, so only declared options). */
export interface CliArgs {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>
  positionals: string[]
}

/** Exit codes of the `apmatrix` command (sysexits-like where one applies). */
export const EXIT = {
  OK: 0,
  /** A runtime failure after the arguments were accepted. */
  FAILURE: 1,
  /** Bad command line: unknown verb or option, bad option value, bad profile. */
  USAGE: 2,
  /** Client verbs: the server refused the change at admission (violations; src/cli/EXIT-CODES.md). */
  REFUSED: 3,
  /** Client verbs: the object (device, host) does not exist. */
  NOT_FOUND: 4,
  /** Client verbs: stale version (If-Match) or the object already exists with another spec. */
  CONFLICT: 5,
  /** Client verbs: the server cannot be reached, did not answer in time, or answered 503. */
  UNAVAILABLE: 6,
  /** Client verbs: the devices did not become Ready before the wait timeout (`apply`, `--wait`). */
  TIMEOUT: 7,
  /** `emulator serve --mount`: it cannot mount (no binding, no /dev/fuse, no permission, a busy or non-empty directory); sysexits EX_UNAVAILABLE. */
  FUSE_UNAVAILABLE: 69,
} as const

/** A verb of the `apmatrix` command. */
export interface CliCommand {
  /** The words that select it, e.g. `['emulator', 'shell']`. */
  path: readonly string[]
  /** One line for the command list in `apmatrix --help`. */
  summary: string
  /** The full text of `apmatrix <path> --help` (usage line first). */
  help: string
  /** Declared options (`--help` is added by main). Unknown options are a usage error. */
  options: NonNullable<ParseArgsConfig['options']>
  /** Whether bare arguments are accepted; default false (any positional is a usage error). */
  allowPositionals?: boolean
  /**
   * Runs the verb; resolves to the exit code. Throw {@link UsageError} for a bad argument the
   * option parser could not catch (exit 2 with the message, no stack trace).
   */
  run(args: CliArgs, io: CliIo): Promise<number>
}

/** A command-line mistake: main prints `apmatrix: <message>` and the usage hint, and exits 2. */
export class UsageError extends Error {
  /** The verb whose `--help` the hint points to (set by main for errors raised inside a verb). */
  command?: readonly string[]
  constructor(message: string, command?: readonly string[]) {
    super(message)
    this.name = 'UsageError'
    this.command = command
  }
}
