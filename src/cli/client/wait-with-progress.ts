/** {@link waitForDevices} with the progress display on stderr (a status line on a terminal, plain lines otherwise). */
import type { CliIo } from '../command.js'
import { createProgress } from '../format/progress.js'
import type { ClientContext } from '../args/client-options.js'
import { type TargetState, type WaitTarget, waitForDevices } from './wait-ready.js'

/** Waits for `targets`; rejects as {@link waitForDevices} (WaitTimeoutError at the deadline). */
export async function waitWithProgress(io: CliIo, ctx: ClientContext, targets: readonly WaitTarget[], timeoutMs: number): Promise<TargetState[]> {
  const progress = createProgress(io.stderr, (io.stderr as { isTTY?: boolean }).isTTY === true)
  try {
    return await waitForDevices({ client: ctx.client, hostPath: ctx.hostPath, targets, timeoutMs, onPoll: (s, ms) => progress.update(s, ms) })
  } finally {
    progress.done()
  }
}
