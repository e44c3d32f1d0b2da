/**
 * Backpressure for long-lived streams (gRPC Watch, SSE): after a write that the transport buffered, wait
 * until it drains, or until the stream ends (`close`, or gRPC's `cancelled`), whichever comes first.
 */
import { once } from 'node:events'

/** Resolves on `drain` or on any of `endEvents`; never rejects (a failed stream ends through `close`). */
export async function drainedOrEnded(stream: NodeJS.EventEmitter, endEvents: readonly string[] = ['close']): Promise<void> {
  const ac = new AbortController()
  const { signal } = ac
  try {
    await Promise.race([once(stream, 'drain', { signal }), ...endEvents.map((e) => once(stream, e, { signal }))])
  } catch {
    // Aborted or failed: 'close' ends the stream.
  } finally {
    ac.abort()
  }
}
