/**
 * The progress display of a wait (`apply`) on stderr: on a terminal one status line rewritten in place;
 * otherwise (logs, CI, pipes) a plain line each time a device's state changes, so nothing is lost.
 */
import type { TargetState } from '../client/wait-ready.js'
import { formatDuration } from '../args/duration.js'

/** Receives poll results and writes the display. */
export interface Progress {
  update(states: readonly TargetState[], elapsedMs: number): void
  /** Ends the display (clears the status line on a terminal). */
  done(): void
}

/** A progress display on `stream`; `tty` selects the in-place line. */
export function createProgress(stream: NodeJS.WritableStream, tty: boolean): Progress {
  const last = new Map<string, string>()
  let drawn = false
  return {
    update(states, elapsedMs) {
      if (tty) {
        const ready = states.filter((s) => s.done).length
        const next = states.find((s) => !s.done)
        const line = `waiting: ${ready}/${states.length} ready [${formatDuration(elapsedMs)}]${next ? `  ${next.target.uuid.slice(0, 8)}: ${next.summary}` : ''}`
        const cols = (stream as { columns?: number }).columns || 100
        stream.write(`\r\x1b[K${line.slice(0, Math.max(20, cols - 1))}`)
        drawn = true
        return
      }
      for (const s of states) {
        if (last.get(s.target.uuid) === s.summary) continue
        last.set(s.target.uuid, s.summary)
        stream.write(`${s.target.uuid}: ${s.summary} [${formatDuration(elapsedMs)}]\n`)
      }
    },
    done() {
      if (tty && drawn) stream.write('\r\x1b[K')
    },
  }
}
