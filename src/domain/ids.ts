import { ApmatrixError } from './errors.js'

/** An adapter number (APID), 0..255. */
export type Apid = number
/** A usage- or control-domain index (APQI), 0..255. */
export type Apqi = number
/** One AP queue: the (APID, APQI) pair. */
export interface Apqn {
  apid: Apid
  apqi: Apqi
}

/** The largest id the architecture can address (APXA, docs/kernel-model.md O-2). */
export const MAX_ID = 255

/** True for an integer in 0..255. */
export function isId(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= MAX_ID
}

/** O-10: APID as two lowercase hex digits (`05`). */
export function formatApid(apid: Apid): string {
  return apid.toString(16).padStart(2, '0')
}

/** O-10: APQI as four lowercase hex digits (`0004`). */
export function formatApqi(apqi: Apqi): string {
  return apqi.toString(16).padStart(4, '0')
}

/** O-10: the kernel's queue name `aa.dddd` (`05.0004`), as used by sysfs, `matrix` and log lines. */
export function formatApqn(apid: Apid, apqi: Apqi): string {
  return `${formatApid(apid)}.${formatApqi(apqi)}`
}

/** O-5: the kernel's card name `cardXX` (`card05`). */
export function formatCard(apid: Apid): string {
  return `card${formatApid(apid)}`
}

/** O-4: qid = (APID << 8) | APQI. */
export function qid(apid: Apid, apqi: Apqi): number {
  return (apid << 8) | apqi
}

const APQN_RE = /^([0-9a-f]{2})\.([0-9a-f]{4})$/

/**
 * Parses a queue name exactly as the kernel prints it (`05.0004`, lowercase). Returns undefined for
 * anything else (sysfs device names are matched exactly, so `05.0004 ` or `5.4` name no device).
 */
export function parseApqnName(s: string): Apqn | undefined {
  const m = APQN_RE.exec(s)
  if (!m) return undefined
  const apid = parseInt(m[1]!, 16)
  const apqi = parseInt(m[2]!, 16)
  return apqi > MAX_ID ? undefined : { apid, apqi }
}

/** Parses `cardXX` (lowercase hex). Returns undefined for anything else. */
export function parseCardName(s: string): Apid | undefined {
  const m = /^card([0-9a-f]{2})$/.exec(s)
  return m ? parseInt(m[1]!, 16) : undefined
}

/**
 * Parses an APQN given by an API caller: the kernel form `05.0004` (any case). Throws INVALID_ARGUMENT.
 */
export function parseApqn(s: string, field = 'apqn'): Apqn {
  const a = typeof s === 'string' ? parseApqnName(s.toLowerCase()) : undefined
  if (!a) throw new ApmatrixError('INVALID_ARGUMENT', `${field}: '${String(s)}' is not an APQN like 05.0004`)
  return a
}

/**
 * Parses an id given by an API caller (docs/api.md (Resources)): a JSON integer, or a string in decimal or `0x` hex.
 * Throws INVALID_ARGUMENT for anything else and OUT_OF_RANGE above `max`.
 */
export function parseId(v: unknown, field: string, max: number = MAX_ID): number {
  let n: number | undefined
  if (typeof v === 'number' && Number.isInteger(v)) n = v
  else if (typeof v === 'string') {
    if (/^(0|[1-9][0-9]{0,9})$/.test(v)) n = Number(v)
    else if (/^0[xX][0-9a-fA-F]{1,8}$/.test(v)) n = parseInt(v.slice(2), 16)
  }
  if (n === undefined || n < 0) {
    throw new ApmatrixError('INVALID_ARGUMENT', `${field}: '${String(v)}' is not an id (an integer, or a decimal or 0x hex string)`, {
      violations: [{ rule: 'INVALID_ARGUMENT', field, message: `not an id: ${String(v)}` }],
    })
  }
  if (n > max) {
    throw new ApmatrixError('OUT_OF_RANGE', `${field}: ${n} is above the maximum ${max}`, {
      errno: 'ENODEV',
      violations: [{ rule: 'OUT_OF_RANGE', field, id: n, message: `${field} ${n} > ${max}` }],
    })
  }
  return n
}

/** Sorted, de-duplicated copy of an id list. */
export function normalizeIds(ids: Iterable<number>): number[] {
  return [...new Set(ids)].sort((a, b) => a - b)
}

/**
 * Parses an unsigned integer the way the kernel's kstrtoul(s, 0) does (V-6, lib/kstrtox.c): one optional
 * leading `+`, base auto-detection (`0x`/`0X` followed by a hex digit: hex; leading `0`: octal; else
 * decimal), at least one digit, one optional trailing newline, then the end. Empty input, other signs,
 * spaces or bad digits (`08`) give EINVAL. A value above 2^64-1 gives ERANGE, and as in the kernel the
 * overflow is reported before trailing garbage is looked at. Returns a bigint so callers can range-check exactly.
 */
export function kstrtoul(s: string): { ok: true; value: bigint } | { ok: false; errno: 'EINVAL' | 'ERANGE' } {
  const start = s.startsWith('+') ? 1 : 0
  const p = parseIntegerPrefix(s, start)
  if (p.overflow) return { ok: false, errno: 'ERANGE' }
  if (p.digits === 0) return { ok: false, errno: 'EINVAL' }
  let i = p.end
  if (s[i] === '\n') i++
  if (i < s.length) return { ok: false, errno: 'EINVAL' }
  return { ok: true, value: p.value }
}

/**
 * The kernel's simple_strtoul(s, &end, 0) as used by the relative mask syntax (B-21): base auto-detection,
 * stops at the first character that is not a digit of the base. Returns the value and the index after the
 * last consumed character (`start` when no digit was consumed: the caller treats that as EINVAL). As in the
 * kernel, a value above 2^64-1 silently wraps modulo 2^64 (so `+0x10000000000000001` is bit 1).
 */
export function simpleStrtoul(s: string, start: number): { value: number; end: number } {
  const p = parseIntegerPrefix(s, start)
  return p.digits === 0 ? { value: 0, end: start } : { value: Number(p.value), end: p.end }
}

const U64 = (1n << 64n) - 1n

/**
 * lib/kstrtox.c `_parse_integer_fixup_radix` + `_parse_integer` with base 0: the digits at `start`,
 * the value modulo 2^64, whether it overflowed, and where the digits end.
 */
function parseIntegerPrefix(s: string, start: number): { value: bigint; overflow: boolean; digits: number; end: number } {
  let i = start
  let base = 10
  if (s[i] === '0') {
    if ((s[i + 1] === 'x' || s[i + 1] === 'X') && hexValue(s[i + 2]) >= 0) {
      base = 16
      i += 2
    } else base = 8
  }
  const begin = i
  // Plain numbers while exact (< 2^48 keeps value*16+15 below 2^53), bigint only for long inputs.
  let small = 0
  let big: bigint | undefined
  let overflow = false
  for (; i < s.length; i++) {
    const d = hexValue(s[i])
    if (d < 0 || d >= base) break
    if (big === undefined && small < 2 ** 48) small = small * base + d
    else {
      const v = (big ?? BigInt(small)) * BigInt(base) + BigInt(d)
      if (v > U64) overflow = true
      big = v & U64
    }
  }
  return { value: big ?? BigInt(small), overflow, digits: i - begin, end: i }
}

function hexValue(c: string | undefined): number {
  if (c === undefined) return -1
  const code = c.charCodeAt(0)
  if (code >= 48 && code <= 57) return code - 48
  if (code >= 97 && code <= 102) return code - 87
  if (code >= 65 && code <= 70) return code - 55
  return -1
}
