import { ApmatrixError } from '../domain/errors.js'
import { clip } from '../domain/text.js'

/** One element of a parsed XML document. `line` is where its start tag begins (1-based), for error messages. */
export interface XmlElement {
  name: string
  attrs: Map<string, string>
  children: XmlElement[]
  /** The element's own character data (text and CDATA between its children), entities resolved. */
  text: string
  line: number
}

/** Largest XML document {@link parseXml} reads (a node-device XML with every id assigned is about 40 KiB). */
export const MAX_XML_CHARS = 1 << 20

const MAX_DEPTH = 32
const NAME_START = /[A-Za-z_:]/
const NAME_CHAR = /[A-Za-z0-9._:-]/
const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" }

/**
 * Parses a small XML document (libvirt's node-device and domain XML) into an element tree. Strict and
 * closed: well-formedness errors, a DOCTYPE (no entity expansion is ever done), unknown entities, a
 * document above {@link MAX_XML_CHARS} or nested deeper than 32 all throw INVALID_ARGUMENT naming
 * `field` and the line and column. Comments, processing instructions and the XML declaration are skipped.
 */
export function parseXml(text: string, field = 'xml'): XmlElement {
  return new XmlReader(text, field).document()
}

/** Escapes a string for an XML attribute value written between single quotes (libvirt's style). */
export function escapeXmlAttr(s: string): string {
  return s.replace(/[&<>'"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', "'": '&apos;', '"': '&quot;' })[c]!)
}

/** Escapes a string for XML character data. */
export function escapeXmlText(s: string): string {
  return s.replace(/[&<>]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c]!)
}

class XmlReader {
  private i = 0
  private linePos = 0
  private line = 1

  constructor(
    private readonly s: string,
    private readonly field: string,
  ) {
    if (typeof s !== 'string') this.fail('must be a string', 0)
    if (s.length > MAX_XML_CHARS) this.fail(`longer than ${MAX_XML_CHARS} characters`, 0)
    if (s.charCodeAt(0) === 0xfeff) this.i = 1
  }

  document(): XmlElement {
    this.misc()
    if (this.i >= this.s.length) this.fail('no root element')
    if (this.s.startsWith('<!DOCTYPE', this.i)) this.fail('a DOCTYPE is not accepted')
    if (this.s[this.i] !== '<') this.fail('text before the root element')
    const root = this.element(0)
    this.misc()
    if (this.i < this.s.length) this.fail('content after the root element')
    return root
  }

  /** Whitespace, comments and processing instructions (including the XML declaration). */
  private misc(): void {
    for (;;) {
      this.space()
      if (this.s.startsWith('<!--', this.i)) this.comment()
      else if (this.s.startsWith('<?', this.i)) this.pi()
      else return
    }
  }

  private element(depth: number): XmlElement {
    if (depth >= MAX_DEPTH) this.fail(`elements nested deeper than ${MAX_DEPTH}`)
    const line = this.lineAt(this.i)
    this.i++ // '<'
    const name = this.name()
    const attrs = new Map<string, string>()
    for (;;) {
      const hadSpace = this.space()
      const c = this.s[this.i]
      if (c === '/' && this.s[this.i + 1] === '>') {
        this.i += 2
        return { name, attrs, children: [], text: '', line }
      }
      if (c === '>') {
        this.i++
        break
      }
      if (c === undefined) this.fail(`unterminated start tag <${name}>`)
      if (!hadSpace) this.fail(`expected whitespace, '>' or '/>' in <${name}>`)
      const at = this.i
      const attr = this.name()
      this.space()
      if (this.s[this.i] !== '=') this.fail(`expected '=' after attribute ${attr}`)
      this.i++
      this.space()
      if (attrs.has(attr)) this.fail(`duplicate attribute ${attr} in <${name}>`, at)
      attrs.set(attr, this.attrValue())
    }
    const children: XmlElement[] = []
    let text = ''
    for (;;) {
      if (this.i >= this.s.length) this.fail(`<${name}> (line ${line}) is not closed`)
      if (this.s.startsWith('</', this.i)) {
        this.i += 2
        const at = this.i
        const end = this.name()
        if (end !== name) this.fail(`</${end}> closes <${name}> (line ${line})`, at)
        this.space()
        if (this.s[this.i] !== '>') this.fail(`expected '>' after </${end}`)
        this.i++
        return { name, attrs, children, text, line }
      }
      if (this.s.startsWith('<!--', this.i)) this.comment()
      else if (this.s.startsWith('<![CDATA[', this.i)) {
        const end = this.s.indexOf(']]>', this.i + 9)
        if (end < 0) this.fail('unterminated CDATA section')
        text += this.s.slice(this.i + 9, end)
        this.i = end + 3
      } else if (this.s.startsWith('<?', this.i)) this.pi()
      else if (this.s.startsWith('<!', this.i)) this.fail('declarations are not accepted inside elements')
      else if (this.s[this.i] === '<') children.push(this.element(depth + 1))
      else text += this.charData('<')
    }
  }

  private attrValue(): string {
    const q = this.s[this.i]
    if (q !== '"' && q !== "'") this.fail('attribute value must be quoted')
    this.i++
    const v = this.charData(q)
    if (this.s[this.i] !== q) this.fail('unterminated attribute value')
    this.i++
    return v
  }

  /** Character data up to `stop` (not consumed), with entity and character references resolved. */
  private charData(stop: string): string {
    let out = ''
    while (this.i < this.s.length && this.s[this.i] !== stop) {
      const c = this.s[this.i]!
      if (c === '<') this.fail("'<' in an attribute value")
      if (c === '&') {
        const end = this.s.indexOf(';', this.i)
        const ref = end < 0 ? '' : this.s.slice(this.i + 1, end)
        let ch: string | undefined
        if (/^#[0-9]{1,7}$/.test(ref)) ch = codePoint(parseInt(ref.slice(1), 10))
        else if (/^#x[0-9a-fA-F]{1,6}$/.test(ref)) ch = codePoint(parseInt(ref.slice(2), 16))
        else ch = ENTITIES[ref]
        if (ch === undefined) this.fail(`unknown or malformed reference '&${clip(ref, 16)}'`)
        out += ch
        this.i = end + 1
      } else {
        out += c
        this.i++
      }
    }
    return out
  }

  private name(): string {
    const start = this.i
    if (!NAME_START.test(this.s[this.i] ?? '')) this.fail('expected a name')
    this.i++
    while (NAME_CHAR.test(this.s[this.i] ?? '')) this.i++
    return this.s.slice(start, this.i)
  }

  private comment(): void {
    const end = this.s.indexOf('-->', this.i + 4)
    if (end < 0) this.fail('unterminated comment')
    this.i = end + 3
  }

  private pi(): void {
    const end = this.s.indexOf('?>', this.i + 2)
    if (end < 0) this.fail('unterminated processing instruction')
    this.i = end + 2
  }

  private space(): boolean {
    const start = this.i
    while (this.i < this.s.length && ' \t\r\n'.includes(this.s[this.i]!)) this.i++
    return this.i > start
  }

  /** Line of `pos`, counted incrementally: the reader only moves forward, so this stays linear. */
  private lineAt(pos: number): number {
    if (pos < this.linePos) {
      this.linePos = 0
      this.line = 1
    }
    for (; this.linePos < pos && this.linePos < this.s.length; this.linePos++) if (this.s.charCodeAt(this.linePos) === 10) this.line++
    return this.line
  }

  private fail(message: string, pos = this.i): never {
    const line = this.lineAt(pos)
    const col = pos - (this.s.lastIndexOf('\n', pos - 1) + 1) + 1
    const where = `${this.field}: line ${line}, column ${col}`
    throw new ApmatrixError('INVALID_ARGUMENT', `${where}: ${message}`, {
      violations: [{ rule: 'INVALID_ARGUMENT', field: this.field, message: `${where}: ${message}` }],
    })
  }
}

function codePoint(n: number): string | undefined {
  // XML 1.0 Char production: no NUL or other C0 controls besides tab, newline and carriage return.
  const ok = n === 0x9 || n === 0xa || n === 0xd || (n >= 0x20 && n <= 0xd7ff) || (n >= 0xe000 && n <= 0x10ffff && n !== 0xfffe && n !== 0xffff)
  return ok ? String.fromCodePoint(n) : undefined
}
