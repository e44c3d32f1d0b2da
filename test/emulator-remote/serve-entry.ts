/**
 * Process entry for emulator-process.test.ts: runs `apmatrix emulator serve` from source (the
 * src/cli wiring is not needed) with the exit code of {@link emulatorServe}. Without arguments it
 * does nothing, so a runner that executes every file of this folder does not start a server.
 */
import { emulatorServe } from '../../src/cli/commands/emulator-serve.js'

if (process.argv.length > 2) process.exitCode = await emulatorServe(process.argv.slice(2))
