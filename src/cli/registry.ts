/**
 * Every verb of the `apmatrix` command. A new verb is one file under src/cli/commands/ exporting a
 * {@link CliCommand}, plus one line here; the order is the order of `apmatrix --help`.
 */
import type { CliCommand } from './command.js'
import { emulatorShellCommand } from './commands/emulator-shell.js'
import { serveCommand } from './commands/serve.js'
import { emulatorServeCommand } from './commands/emulator-serve.js'

/** The registered verbs. */
export const commands: readonly CliCommand[] = [serveCommand, emulatorShellCommand, emulatorServeCommand]
