import { simpleStrtoul } from './ids.js'

/** Number of bits in an AP mask (apm, aqm, adm, apmask, aqmask). */
export const MASK_BITS = 256

/**
 * An immutable 256-bit AP mask, MSB-first as the kernel prints it: bit 0 is the leftmost bit
 * (`0x80…` is index 0, docs/kernel-model.md 0.3). Backed by 32 bytes; byte i holds bits 8i..8i+7.
 */
export class Mask {
  /** @internal */
  readonly bytes: Uint8Array

  private constructor(bytes: Uint8Array) {
    this.bytes = bytes
  }

  /** The all-zero mask. */
  static empty(): Mask {
    return new Mask(new Uint8Array(32))
  }

  /** The all-ones mask (B-20: the default apmask and aqmask). */
  static full(): Mask {
    return new Mask(new Uint8Array(32).fill(0xff))
  }

  /** A mask with exactly these bits set. Ids outside 0..255 throw RangeError (a programming error). */
  static of(ids: Iterable<number>): Mask {
    const b = new Uint8Array(32)
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= MASK_BITS) throw new RangeError(`mask bit ${id} out of range`)
      b[id >> 3]! |= 0x80 >> (id & 7)
    }
    return new Mask(b)
  }

  /** Bits 0..n set (used for `Na`/`Nd` style ranges). */
  static range(from: number, to: number): Mask {
    const ids: number[] = []
    for (let i = from; i <= to; i++) ids.push(i)
    return Mask.of(ids)
  }

  /** Wraps 32 bytes (copied). */
  static fromBytes(bytes: Uint8Array): Mask {
    if (bytes.length !== 32) throw new RangeError('a mask has 32 bytes')
    return new Mask(new Uint8Array(bytes))
  }

  has(id: number): boolean {
    return id >= 0 && id < MASK_BITS && (this.bytes[id >> 3]! & (0x80 >> (id & 7))) !== 0
  }

  /** A copy with `id` set (or cleared when `on` is false). */
  with(id: number, on = true): Mask {
    const b = new Uint8Array(this.bytes)
    if (on) b[id >> 3]! |= 0x80 >> (id & 7)
    else b[id >> 3]! &= ~(0x80 >> (id & 7))
    return new Mask(b)
  }

  /** The set bits in ascending order. */
  ids(): number[] {
    const out: number[] = []
    for (let i = 0; i < 32; i++) {
      const v = this.bytes[i]!
      if (v === 0) continue
      for (let j = 0; j < 8; j++) if (v & (0x80 >> j)) out.push(i * 8 + j)
    }
    return out
  }

  count(): number {
    let n = 0
    for (const v of this.bytes) {
      let x = v
      while (x) {
        x &= x - 1
        n++
      }
    }
    return n
  }

  isEmpty(): boolean {
    return this.bytes.every((v) => v === 0)
  }

  isFull(): boolean {
    return this.bytes.every((v) => v === 0xff)
  }

  equals(o: Mask): boolean {
    for (let i = 0; i < 32; i++) if (this.bytes[i] !== o.bytes[i]) return false
    return true
  }

  and(o: Mask): Mask {
    return new Mask(this.bytes.map((v, i) => v & o.bytes[i]!))
  }

  or(o: Mask): Mask {
    return new Mask(this.bytes.map((v, i) => v | o.bytes[i]!))
  }

  /** Bits set here and not in `o`. */
  minus(o: Mask): Mask {
    return new Mask(this.bytes.map((v, i) => v & ~o.bytes[i]!))
  }

  /** B-20: the kernel's read format, `0x` + 64 lowercase hex digits (no newline). */
  toString(): string {
    let s = '0x'
    for (const v of this.bytes) s += v.toString(16).padStart(2, '0')
    return s
  }

  toJSON(): string {
    return this.toString()
  }
}

/** Result of parsing a mask string: the new mask, or the kernel's errno. */
export type MaskParse = { ok: true; mask: Mask } | { ok: false; errno: 'EINVAL'; reason: string }

/**
 * B-21 absolute mode (the kernel's ap_hex2bitmap): optional lowercase `0x` or `x`, hex digits MSB-first
 * padded with zeros on the right, at most 64 digits, one optional trailing newline. `0x`, `x` and the
 * empty string give the all-zero mask. `0X` (uppercase), spaces, a second newline: EINVAL.
 */
export function parseAbsoluteMask(str: string): MaskParse {
  let i = 0
  if (str[0] === '0' && str[1] === 'x') i = 1
  if (str[i] === 'x') i++
  const b = new Uint8Array(32)
  let bit = 0
  for (; i < str.length && bit < MASK_BITS; i++, bit += 4) {
    const d = hexDigit(str[i]!)
    if (d < 0) break
    b[bit >> 3]! |= bit & 4 ? d : d << 4
  }
  if (str[i] === '\n') i++
  if (i < str.length) {
    return {
      ok: false,
      errno: 'EINVAL',
      reason: bit >= MASK_BITS ? 'more than 64 hex digits' : `unexpected '${printable(String.fromCodePoint(str.codePointAt(i)!))}'`,
    }
  }
  return { ok: true, mask: Mask.fromBytes(b) }
}

/**
 * B-21 relative mode (the kernel's modify_bitmap): terms `+N`, `-N`, `+N-M`, `-N-M` applied left to right
 * to a copy of `current` (last term wins). N and M use C base auto-detection (`+010` is 8). Commas and
 * newlines between terms are skipped; anything else, a value >= 256 or N > M: EINVAL and nothing changes.
 */
export function parseRelativeMask(str: string, current: Mask): MaskParse {
  const b = new Uint8Array(current.bytes)
  let i = 0
  while (i < str.length) {
    const sign = str[i++]
    if (sign !== '+' && sign !== '-') return { ok: false, errno: 'EINVAL', reason: `term must start with + or -, got '${printable(sign!)}'` }
    const a = simpleStrtoul(str, i)
    if (a.end === i) return { ok: false, errno: 'EINVAL', reason: 'missing number' }
    if (a.value >= MASK_BITS) return { ok: false, errno: 'EINVAL', reason: `${a.value} is not below ${MASK_BITS}` }
    i = a.end
    let z = a.value
    if (str[i] === '-') {
      i++
      const r = simpleStrtoul(str, i)
      if (r.end === i) return { ok: false, errno: 'EINVAL', reason: 'missing range end' }
      if (a.value > r.value) return { ok: false, errno: 'EINVAL', reason: `range ${a.value}-${r.value}: start above end` }
      if (r.value >= MASK_BITS) return { ok: false, errno: 'EINVAL', reason: `${r.value} is not below ${MASK_BITS}` }
      z = r.value
      i = r.end
    }
    for (let id = a.value; id <= z; id++) {
      if (sign === '+') b[id >> 3]! |= 0x80 >> (id & 7)
      else b[id >> 3]! &= ~(0x80 >> (id & 7))
    }
    while (str[i] === ',' || str[i] === '\n') i++
  }
  return { ok: true, mask: Mask.fromBytes(b) }
}

/**
 * B-21/B-22: the kernel's ap_parse_mask_str for apmask/aqmask writes. The first character picks the mode
 * (`+`/`-`: relative to `current`; anything else: absolute). All or nothing: on error `current` is untouched.
 */
export function parseMaskWrite(str: string, current: Mask): MaskParse {
  return str[0] === '+' || str[0] === '-' ? parseRelativeMask(str, current) : parseAbsoluteMask(str)
}

function hexDigit(c: string): number {
  const code = c.charCodeAt(0)
  if (code >= 48 && code <= 57) return code - 48
  if (code >= 97 && code <= 102) return code - 87
  if (code >= 65 && code <= 70) return code - 55
  return -1
}

/** One character of the input as a message shows it: control characters as `\uXXXX`. */
function printable(c: string): string {
  if (c === '\n') return '\\n'
  if (c === ' ') return 'space'
  // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
  return /[\u0000-\u001f\u007f]/.test(c) ? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}` : c
}
