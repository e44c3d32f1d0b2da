import { ApmatrixError } from '../domain/errors.js'
import { clip } from '../domain/text.js'

/** Largest JSON document {@link parseJsonWithLines} reads. */
export const MAX_JSON_CHARS = 1 << 20

const MAX_DEPTH = 64

/** A parsed JSON value and the line (1-based) where each of its objects and arrays starts. */
export interface JsonWithLines {
  value: unknown
  lineOf(node: object): number | undefined
}

/**
 * Parses JSON text exactly as JSON.parse would (RFC 8259), but remembers where each object and array
 * starts so import errors can name the line of a pretty-printed `mdevctl --dumpjson` document. Stricter
 * than JSON.parse in two ways, both to keep imports unambiguous: a duplicate key in one object is an error
 * (JSON.parse silently keeps the last), and nesting deeper than 64 is refused. Throws INVALID_ARGUMENT
 * naming `field`, the line and the column.
 */
export function parseJsonWithLines(text: string, field = 'json'): JsonWithLines {
  const r = new JsonReader(text, field)
  const value = r.document()
  return { value, lineOf: (node) => r.lines.get(node) }
}

class JsonReader {
  readonly lines = new WeakMap<object, number>()
  private i = 0
  private line = 1
  private lineStart = 0

  constructor(
    private readonly s: string,
    private readonly field: string,
  ) {
    if (typeof s !== 'string') this.fail('must be a string')
    if (s.length > MAX_JSON_CHARS) this.fail(`longer than ${MAX_JSON_CHARS} characters`)
  }

  document(): unknown {
    this.space()
    const v = this.value(0)
    this.space()
    if (this.i < this.s.length) this.fail('unexpected content after the JSON value')
    return v
  }

  private value(depth: number): unknown {
    if (depth > MAX_DEPTH) this.fail(`nested deeper than ${MAX_DEPTH}`)
    const c = this.s[this.i]
    if (c === '{') return this.object(depth)
    if (c === '[') return this.array(depth)
    if (c === '"') return this.string()
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.number()
    for (const [word, v] of [
      ['true', true],
      ['false', false],
      ['null', null],
    ] as const) {
      if (this.s.startsWith(word, this.i)) {
        this.i += word.length
        return v
      }
    }
    return this.fail(c === undefined ? 'unexpected end of input' : `unexpected character '${c}'`)
  }

  private object(depth: number): Record<string, unknown> {
    const obj: Record<string, unknown> = {}
    this.lines.set(obj, this.line)
    this.i++
    this.space()
    if (this.s[this.i] === '}') {
      this.i++
      return obj
    }
    for (;;) {
      if (this.s[this.i] !== '"') this.fail('expected a string key')
      const keyAt = this.i
      const key = this.string()
      if (Object.hasOwn(obj, key)) this.fail(`duplicate key '${clip(key, 64)}'`, keyAt)
      this.space()
      if (this.s[this.i] !== ':') this.fail(`expected ':' after key '${clip(key, 64)}'`)
      this.i++
      this.space()
      // defineProperty: a key named __proto__ stays an own property, as with JSON.parse.
      Object.defineProperty(obj, key, { value: this.value(depth + 1), enumerable: true, writable: true, configurable: true })
      this.space()
      const c = this.s[this.i++]
      if (c === '}') return obj
      if (c !== ',') this.fail("expected ',' or '}'", this.i - 1)
      this.space()
    }
  }

  private array(depth: number): unknown[] {
    const arr: unknown[] = []
    this.lines.set(arr, this.line)
    this.i++
    this.space()
    if (this.s[this.i] === ']') {
      this.i++
      return arr
    }
    for (;;) {
      arr.push(this.value(depth + 1))
      this.space()
      const c = this.s[this.i++]
      if (c === ']') return arr
      if (c !== ',') this.fail("expected ',' or ']'", this.i - 1)
      this.space()
    }
  }

  private string(): string {
    const start = this.i
    const end = this.scanString()
    try {
      return JSON.parse(this.s.slice(start, end)) as string
    } catch {
      return this.fail('invalid string', start)
    }
  }

  /** Index after the closing quote of the string at `i`; control characters and bad escapes fail. */
  private scanString(): number {
    this.i++
    for (;;) {
      const c = this.s.charCodeAt(this.i)
      if (Number.isNaN(c)) this.fail('unterminated string')
      if (c === 0x22) return ++this.i
      if (c < 0x20) this.fail('control character in a string')
      if (c === 0x5c) {
        const e = this.s[this.i + 1]
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(this.s.slice(this.i + 2, this.i + 6))) this.fail('bad \\u escape')
          this.i += 6
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) this.i += 2
        else this.fail('bad escape')
      } else this.i++
    }
  }

  private number(): number {
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(this.s.slice(this.i, this.i + 400))
    if (!m) return this.fail('invalid number')
    this.i += m[0].length
    return Number(m[0])
  }

  private space(): void {
    for (;;) {
      const c = this.s[this.i]
      if (c === '\n') {
        this.line++
        this.lineStart = this.i + 1
      } else if (c !== ' ' && c !== '\t' && c !== '\r') return
      this.i++
    }
  }

  private fail(message: string, pos = this.i): never {
    const col = pos - this.lineStart + 1
    const where = typeof this.s === 'string' && this.s.length <= MAX_JSON_CHARS ? `${this.field}: line ${this.line}, column ${col}` : this.field
    throw new ApmatrixError('INVALID_ARGUMENT', `${where}: ${message}`, {
      violations: [{ rule: 'INVALID_ARGUMENT', field: this.field, message: `${where}: ${message}` }],
    })
  }
}
