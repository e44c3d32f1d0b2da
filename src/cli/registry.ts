/**
 * Every verb of the `apmatrix` command. A new verb is one file under src/cli/commands/ exporting a
 * {@link CliCommand}, plus one line here; the order is the order of `apmatrix --help`.
 */
import type { CliCommand } from './command.js'
import { agentCommand } from './commands/agent.js'
import { authHashTokenCommand, authWhoamiCommand } from './commands/auth.js'
import { applyCommand } from './commands/apply.js'
import { emulatorServeCommand } from './commands/emulator-serve.js'
import { emulatorShellCommand } from './commands/emulator-shell.js'
import { eventsCommand } from './commands/events.js'
import { inventoryCommand } from './commands/inventory.js'
import { masksGetCommand, masksSetCommand } from './commands/masks.js'
import { mdevGetCommand, mdevListCommand } from './commands/mdev-read.js'
import { mdevDefineCommand, mdevModifyCommand, mdevStartCommand, mdevStopCommand, mdevUndefineCommand } from './commands/mdev-write.js'
import { planCommand } from './commands/plan.js'
import { serveCommand } from './commands/serve.js'

/** The registered verbs. */
export const commands: readonly CliCommand[] = [
  serveCommand,
  emulatorShellCommand,
  emulatorServeCommand,
  agentCommand,
  inventoryCommand,
  mdevListCommand,
  mdevGetCommand,
  mdevDefineCommand,
  mdevStartCommand,
  mdevStopCommand,
  mdevModifyCommand,
  mdevUndefineCommand,
  masksGetCommand,
  masksSetCommand,
  planCommand,
  applyCommand,
  eventsCommand,
  authWhoamiCommand,
  authHashTokenCommand,
]
