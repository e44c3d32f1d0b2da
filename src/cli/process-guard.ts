/**
 * The last line of defence of a long-running command (`serve`, `emulator serve`, `agent`): an error that
 * escapes every handler (a library callback throwing outside any request, a promise nobody awaited) is
 * logged and the process keeps serving. Without this, one such error from one request ends REST, gRPC
 * and every open stream at once. Errors are still fixed where they arise; this only stops one request's
 * fault from becoming everyone's outage.
 */

/** Where stray errors are reported (pino fits). */
export interface StrayErrorLog {
  error(obj: object, msg?: string): void
}

/**
 * Installs `uncaughtException` and `unhandledRejection` handlers that log and continue; returns a
 * function that removes them. Counts what it caught (see `count()`), for metrics and tests.
 */
export function keepServingOnStrayErrors(log: StrayErrorLog): { remove(): void; count(): number } {
  let caught = 0
  const onError = (kind: string) => (err: unknown) => {
    caught++
    log.error(
      { err: err instanceof Error ? { name: err.name, message: err.message, stack: err.stack } : String(err), kind },
      'stray error caught; still serving',
    )
  }
  const onException = onError('uncaughtException')
  const onRejection = onError('unhandledRejection')
  process.on('uncaughtException', onException)
  process.on('unhandledRejection', onRejection)
  return {
    remove() {
      process.off('uncaughtException', onException)
      process.off('unhandledRejection', onRejection)
    },
    count: () => caught,
  }
}
