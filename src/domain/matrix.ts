import { ApmatrixError } from './errors.js'
import { type Apid, type Apqi, type Apqn, formatApid, formatApqi, formatApqn, MAX_ID, normalizeIds } from './ids.js'
import { clip } from './text.js'

/** The adapters and usage domains of a matrix: the APQNs are their cross product (H-1). */
export interface Matrix {
  adapters: Apid[]
  domains: Apqi[]
}

/**
 * V-12: a matrix claims APQNs only when both dimensions are non-empty. An mdev with adapters and no
 * domains (or the reverse) holds no APQN, so it can neither be reserved nor conflict with another mdev.
 */
export function claimsApqns(adapters: readonly number[], domains: readonly number[]): boolean {
  return adapters.length > 0 && domains.length > 0
}

/** Number of APQNs the matrix claims (0 when a dimension is empty, V-12). */
export function apqnCount(adapters: readonly number[], domains: readonly number[]): number {
  return new Set(adapters).size * new Set(domains).size
}

/**
 * The APQNs of adapters x domains in the V-19 order: APID-major, both ascending, no duplicates
 * (inputs need not be sorted). Empty when either dimension is empty (V-12).
 */
export function crossProduct(adapters: Iterable<Apid>, domains: Iterable<Apqi>): Apqn[] {
  const as = normalizeIds(adapters)
  const ds = normalizeIds(domains)
  const out: Apqn[] = []
  for (const apid of as) for (const apqi of ds) out.push({ apid, apqi })
  return out
}

/**
 * The kernel's `matrix` / `guest_matrix` text (V-19): one `aa.dddd` line per APQN when both dimensions are
 * non-empty, `aa.` lines when only adapters are set, `.dddd` lines when only domains are set, and the empty
 * string when both are empty. Every line ends with a newline.
 */
export function formatMatrix(adapters: Iterable<Apid>, domains: Iterable<Apqi>): string {
  const as = normalizeIds(adapters)
  const ds = normalizeIds(domains)
  if (as.length > 0 && ds.length > 0) {
    let s = ''
    for (const a of as) for (const d of ds) s += `${formatApqn(a, d)}\n`
    return s
  }
  if (as.length > 0) return as.map((a) => `${formatApid(a)}.\n`).join('')
  return ds.map((d) => `.${formatApqi(d)}\n`).join('')
}

const LINE_RE = /^([0-9a-f]{2})?\.([0-9a-f]{4})?$/

/**
 * The inverse of {@link formatMatrix}: the adapters and domains of a kernel `matrix` or `guest_matrix`
 * text, plus its APQNs. Strict: the text must be exactly what the kernel prints for some matrix (a full
 * cross product, ascending, one newline per line), otherwise INVALID_ARGUMENT; so a bus that prints
 * something a kernel never would is caught rather than silently reinterpreted.
 */
export function parseMatrix(text: string): Matrix & { apqns: Apqn[] } {
  const adapters = new Set<number>()
  const domains = new Set<number>()
  const fail = (why: string): never => {
    throw new ApmatrixError('INVALID_ARGUMENT', `not a kernel matrix listing (${why}): ${JSON.stringify(clip(text, 80))}`)
  }
  if (text !== '' && !text.endsWith('\n')) fail('missing final newline')
  for (const line of text === '' ? [] : text.slice(0, -1).split('\n')) {
    const m = LINE_RE.exec(line)
    if (!m || (m[1] === undefined && m[2] === undefined)) fail(`bad line '${line}'`)
    const [, a, d] = m!
    if (a !== undefined) adapters.add(parseInt(a, 16))
    if (d !== undefined) {
      const apqi = parseInt(d, 16)
      if (apqi > MAX_ID) fail(`domain ${apqi} above ${MAX_ID}`)
      domains.add(apqi)
    }
  }
  const result = { adapters: normalizeIds(adapters), domains: normalizeIds(domains) }
  if (formatMatrix(result.adapters, result.domains) !== text) fail('not a sorted cross product')
  return { ...result, apqns: crossProduct(result.adapters, result.domains) }
}
