/**
 * The report of a wait that timed out (`apply`, `mdev ... --wait`): every device waited for with its last
 * known state, so the real cause (a guest holding a device, a failed bus write, a domain the host lacks)
 * is on the screen, and the devices that did converge are said to be Ready rather than listed as late.
 */
import { formatDuration } from '../args/duration.js'
import type { TargetState, WaitTarget } from '../client/wait-target.js'
import { describeConditions, readyPhrase } from './conditions.js'

/**
 * The text of the timeout: a headline (how many of how many are not done), then one entry per target in
 * the order given. `last` is the newest poll's answer; undefined when no poll answered before the
 * deadline, and then the report says exactly that instead of inventing a state.
 */
export function formatWaitTimeout(targets: readonly WaitTarget[], last: readonly TargetState[] | undefined, timeoutMs: number): string {
  const after = `timed out after ${formatDuration(timeoutMs)}`
  if (!last) {
    const list = targets.map((t) => `  ${t.uuid}: unknown (the server did not answer a poll before the deadline)\n`).join('')
    return `${after}: the server answered no poll in time; ${targets.length} device(s) not confirmed:\n${list}`.trimEnd()
  }
  const pending = last.filter((s) => !s.done).length
  let out = `${after} waiting for ${pending} of ${last.length} device(s); the last state the server reported:\n`
  for (const s of last) out += entry(s)
  return out.trimEnd()
}

function entry(s: TargetState): string {
  const { target: t, device: m } = s
  if (s.done) return `  ${t.uuid}: ${t.gone ? 'deleted' : m ? readyPhrase(m) : 'done'}\n`
  if (!m) return `  ${t.uuid}: ${s.summary}\n`
  const head = t.gone ? 'still being deleted' : `not Ready: ${s.summary}`
  return `  ${t.uuid}: ${head}\n${describeConditions(m, t.generation)}`
}
