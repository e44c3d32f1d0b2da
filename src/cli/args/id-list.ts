/**
 * Adapter and domain ids on the command line: comma-separated, each decimal or `0x` hex, ranges `4-7`
 * (docs/api.md (Resources) accepts decimal and 0x strings; ranges are a convenience of the CLI, expanded here).
 * Range checks against the host's maxima are the server's (E-3: OUT_OF_RANGE), so the only local
 * limit is the id space of the architecture (0..255).
 */
import { UsageError } from '../command.js'
import { clip } from '../../domain/text.js'

const ID = /^(?:0[xX][0-9a-fA-F]{1,2}|\d{1,3})$/

function one(text: string, option: string): number {
  const t = text.trim()
  const n = ID.test(t) ? Number(t) : NaN
  if (!(n >= 0 && n <= 255)) throw new UsageError(`${option}: '${clip(t, 20)}' is not an id 0..255 (decimal or 0x hex)`)
  return n
}

/** The sorted, unique ids of `5,6`, `0x47`, `4-7`; several option values are merged. {@link UsageError} otherwise. */
export function parseIdList(values: string | string[] | undefined, option: string): number[] {
  const out = new Set<number>()
  for (const value of values === undefined ? [] : Array.isArray(values) ? values : [values]) {
    for (const part of value.split(',')) {
      if (part.trim() === '') throw new UsageError(`${option}: empty id in '${clip(value, 40)}'`)
      const dash = part.indexOf('-', 1)
      if (dash > 0) {
        const lo = one(part.slice(0, dash), option)
        const hi = one(part.slice(dash + 1), option)
        if (hi < lo) throw new UsageError(`${option}: range '${part.trim()}' is backwards`)
        for (let i = lo; i <= hi; i++) out.add(i)
      } else out.add(one(part, option))
    }
  }
  return [...out].sort((a, b) => a - b)
}

/** `k=v` label options as a map; {@link UsageError} for anything else. */
export function parseLabels(values: string | string[] | undefined, option: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const v of values === undefined ? [] : Array.isArray(values) ? values : [values]) {
    const i = v.indexOf('=')
    if (i <= 0) throw new UsageError(`${option}: '${clip(v, 60)}' is not key=value`)
    out[v.slice(0, i)] = v.slice(i + 1)
  }
  return out
}
