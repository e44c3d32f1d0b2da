/** Durations on the command line: `500ms`, `30s`, `2m`, `1h`, or a bare number of seconds. */
import { UsageError } from '../command.js'
import { clip } from '../../domain/text.js'

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** Milliseconds of `text`; {@link UsageError} naming `option` when it is not a positive duration (at most a day). */
export function parseDuration(text: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim())
  const ms = m ? Math.round(Number(m[1]) * UNIT_MS[m[2] ?? 's']!) : NaN
  if (!m || !(ms > 0) || ms > 86_400_000) throw new UsageError(`${option}: '${clip(text, 40)}' is not a duration (e.g. 500ms, 30s, 2m)`)
  return ms
}

/** A duration for people: `1.5s`, `120ms`, `2m`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`
  if (ms < 120_000) return `${Number((ms / 1000).toFixed(1))}s`
  return `${Math.round(ms / 60_000)}m`
}
