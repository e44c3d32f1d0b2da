/**
 * Static bearer tokens for small setups (docs/security.md (Static tokens)): a file of `name:sha256hex`
 * lines (`#` comments) or JSON `{"tokens":[{"name":..., "sha256":...}]}`. Only digests are stored; a
 * presented token is hashed and compared with every digest in constant time (crypto.timingSafeEqual).
 * Revoking a token = removing its line (and SIGHUP or restart).
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import fs from 'node:fs'

/** A token name: what bindings call it (as a subject). */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/
const HEX = /^[0-9a-f]{64}$/

/** A bad tokens file: the message names the file and the line. */
export class TokensFileError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'TokensFileError'
  }
}

/** The hex SHA-256 of a token (what the file stores; `apmatrix auth hash-token` prints it). */
export function tokenDigest(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex')
}

/** Looks up token names by token. */
export class StaticTokens {
  private readonly entries: Array<{ name: string; digest: Buffer }>

  constructor(entries: Array<{ name: string; sha256: string }>) {
    this.entries = entries.map((e) => ({ name: e.name, digest: Buffer.from(e.sha256, 'hex') }))
  }

  get size(): number {
    return this.entries.length
  }

  /** The name of `token`, or null. Every digest is compared (constant time each), whatever matches. */
  lookup(token: string): string | null {
    const d = createHash('sha256').update(token, 'utf8').digest()
    let found: string | null = null
    for (const e of this.entries) if (timingSafeEqual(d, e.digest) && found === null) found = e.name
    return found
  }
}

/** Reads a tokens file. TokensFileError naming the file and line of the first bad entry. */
export function loadStaticTokens(file: string): StaticTokens {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (e) {
    throw new TokensFileError(`${file}: cannot be read (${(e as Error).message})`)
  }
  return parseStaticTokens(text, file)
}

/** {@link loadStaticTokens} of a text. */
export function parseStaticTokens(text: string, name = 'tokens file'): StaticTokens {
  const out: Array<{ name: string; sha256: string }> = []
  const add = (n: unknown, h: unknown, where: string) => {
    if (typeof n !== 'string' || !NAME.test(n)) throw new TokensFileError(`${name}: ${where}: name must be 1..128 of [A-Za-z0-9._:@-]`)
    if (typeof h !== 'string' || !HEX.test(h.toLowerCase())) throw new TokensFileError(`${name}: ${where}: sha256 must be 64 hex digits`)
    if (out.some((e) => e.name === n)) throw new TokensFileError(`${name}: ${where}: token name ${n} appears twice`)
    out.push({ name: n, sha256: h.toLowerCase() })
  }
  if (text.trimStart().startsWith('{')) {
    let doc: unknown
    try {
      doc = JSON.parse(text)
    } catch (e) {
      throw new TokensFileError(`${name}: not JSON (${(e as Error).message})`)
    }
    const tokens = (doc as { tokens?: unknown }).tokens
    if (!Array.isArray(tokens) || Object.keys(doc as object).length !== 1)
      throw new TokensFileError(`${name}: expected {"tokens": [{"name": ..., "sha256": ...}]}`)
    tokens.forEach((t, i) => {
      const keys = t && typeof t === 'object' ? Object.keys(t) : []
      if (keys.some((k) => k !== 'name' && k !== 'sha256')) throw new TokensFileError(`${name}: tokens[${i}]: only name and sha256 are allowed`)
      add((t as { name?: unknown }).name, (t as { sha256?: unknown }).sha256, `tokens[${i}]`)
    })
  } else {
    text.split('\n').forEach((raw, i) => {
      const line = raw.trim()
      if (!line || line.startsWith('#')) return
      const at = line.lastIndexOf(':')
      if (at <= 0) throw new TokensFileError(`${name}: line ${i + 1}: expected name:sha256hex`)
      add(line.slice(0, at), line.slice(at + 1), `line ${i + 1}`)
    })
  }
  return new StaticTokens(out)
}
