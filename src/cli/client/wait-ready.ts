/**
 * Waiting for convergence after a write (`apply`): polls the host's device list until every target is
 * Ready with `observedGeneration == generation` (docs/api.md (Resources) conditions), and every deleted target is
 * gone from the store, or the deadline passes. Level-based, like the reconciler: a poll that sees the
 * final state ends the wait however it got there.
 */
import { formatWaitTimeout } from '../format/wait-report.js'
import { WaitTimeoutError } from './api-error.js'
import { type Mdev, isConverged, readyCondition } from './api-types.js'
import { listAll } from './list-all.js'
import type { RestClient } from './rest-client.js'
import type { TargetState, WaitTarget } from './wait-target.js'

export type { TargetState, WaitTarget }

/** How long `apply` and `--wait` wait by default. */
export const DEFAULT_WAIT_TIMEOUT_MS = 120_000

/** Options of {@link waitForDevices}. */
export interface WaitOptions {
  client: RestClient
  hostPath: string
  targets: readonly WaitTarget[]
  timeoutMs: number
  /** Poll period (default 200 ms). */
  intervalMs?: number
  /** Told after every poll. */
  onPoll?: (states: readonly TargetState[], elapsedMs: number) => void
}

function stateOf(t: WaitTarget, m: Mdev | undefined): TargetState {
  const seen = m ? { device: m } : {}
  if (t.gone) return { target: t, done: m === undefined, summary: m === undefined ? 'Deleted' : 'Deleting', ...seen }
  if (!m) return { target: t, done: false, summary: 'missing (not in the store)' }
  if (isConverged(m) && m.metadata.generation >= t.generation) return { target: t, done: true, summary: `Ready (${readyCondition(m)?.reason})`, ...seen }
  const r = readyCondition(m)
  if (m.status.observedGeneration !== m.metadata.generation || !r)
    return {
      target: t,
      done: false,
      summary: `waiting for the reconciler (generation ${m.metadata.generation}, observed ${m.status.observedGeneration ?? '-'})`,
      ...seen,
    }
  return { target: t, done: false, summary: `${r.reason}: ${r.message}`, ...seen }
}

/**
 * Resolves with the final states when every target is done; rejects with {@link WaitTimeoutError} at the
 * deadline, whose message gives every target's last known state (done ones as such, the others with their
 * conditions: src/cli/format/wait-report.ts), or with the client's errors.
 */
export async function waitForDevices(opts: WaitOptions): Promise<TargetState[]> {
  const start = Date.now()
  const deadline = start + opts.timeoutMs
  const interval = opts.intervalMs ?? 200
  // The answer of the newest poll that got one: what the timeout reports (undefined: none answered in time).
  let last: TargetState[] | undefined
  for (;;) {
    const left = deadline - Date.now()
    if (left > 0) {
      const timeoutMs = Math.max(1, Math.min(opts.client.timeoutMs, left))
      try {
        const items = await listAllWithin(opts.client, opts.hostPath, timeoutMs)
        const byUuid = new Map(items.map((m) => [m.metadata.uuid, m]))
        last = opts.targets.map((t) => stateOf(t, byUuid.get(t.uuid)))
        opts.onPoll?.(last, Date.now() - start)
        if (last.every((s) => s.done)) return last
      } catch (e) {
        // A poll cut short by the deadline is the timeout below, not an unreachable server.
        if (Date.now() < deadline) throw e
      }
    }
    if (Date.now() >= deadline) throw new WaitTimeoutError(formatWaitTimeout(opts.targets, last, opts.timeoutMs))
    await new Promise((r) => setTimeout(r, Math.min(interval, Math.max(0, deadline - Date.now()))))
  }
}

function listAllWithin(client: RestClient, hostPath: string, timeoutMs: number): Promise<Mdev[]> {
  return listAll<Mdev>(client.withTimeout(timeoutMs), `${hostPath}/mdevs`)
}
