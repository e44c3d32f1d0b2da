/**
 * A reader that goes away ends the command quietly (src/cli/EXIT-CODES.md): `apmatrix events | head -1`
 * prints one line and exits 0, with no EPIPE stack trace. The reader decided it had enough, which is not
 * a failure of the command (exit 0 rather than the 141 of a process killed by SIGPIPE, so that pipelines
 * under `set -o pipefail` do not fail because `head` stopped reading). The verb stops at once: what it
 * had already sent to the server stays sent (an `apply` whose output is cut does not wait for Ready).
 */

/** The streams and the exit the guard works on (the process's own in the binary; tests pass their own). */
export interface ClosedOutputTarget {
  stdout: NodeJS.EventEmitter
  stderr: NodeJS.EventEmitter & { write(text: string): unknown }
  exit: (code: number) => void
}

/**
 * Installs the handlers: EPIPE on stdout exits 0 at once; another stdout error (EIO, ENOSPC) is reported
 * on stderr and exits 1; EPIPE on stderr is ignored (there is nobody left to tell). Idempotent per target.
 */
export function endQuietlyWhenOutputCloses(
  target: ClosedOutputTarget = { stdout: process.stdout, stderr: process.stderr, exit: (code) => process.exit(code) },
): void {
  if (installed.has(target.stdout)) return
  installed.add(target.stdout)
  target.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') return target.exit(0)
    target.stderr.write(`apmatrix: cannot write to standard output: ${e.message}\n`)
    target.exit(1)
  })
  target.stderr.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') target.exit(1)
  })
}

const installed = new WeakSet<object>()
