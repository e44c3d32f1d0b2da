import { createHash } from 'node:crypto'

/** Canonical JSON (object keys sorted at every level), so equal requests hash equally. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`
  }
  return JSON.stringify(v) ?? 'null'
}

/** The request hash stored with an idempotency key: same request, same hash. */
export function requestHash(v: unknown): string {
  return createHash('sha256').update(canonicalJson(v)).digest('hex')
}
