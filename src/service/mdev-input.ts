/**
 * Checks of the caller-supplied parts of a matrix device that the domain does not own: labels, owner,
 * merge patches (RFC 7396), and a format name. Enforced here for every transport, also those without a
 * schema (gRPC). Pure; INVALID_ARGUMENT naming the field.
 */
import { invalidArgument } from '../domain/errors.js'
import { clip } from '../domain/text.js'

/** Most labels a device may carry. */
export const MAX_LABELS = 64
const LABEL_KEY = /^[A-Za-z0-9]([A-Za-z0-9._/-]{0,126}[A-Za-z0-9])?$/

/** True for a JSON object (not null, not an array). */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** A label map: at most {@link MAX_LABELS} keys of 1..128 `[A-Za-z0-9._/-]`, alphanumeric at both ends; values up to 256 characters. */
export function checkLabels(v: unknown): Record<string, string> {
  if (!isPlainObject(v)) throw invalidArgument('labels', 'must be an object of strings')
  const entries = Object.entries(v)
  if (entries.length > MAX_LABELS) throw invalidArgument('labels', `at most ${MAX_LABELS} labels`)
  for (const [k, x] of entries) {
    if (!LABEL_KEY.test(k)) throw invalidArgument(`labels.${clip(k, 64)}`, 'label keys are 1..128 of [A-Za-z0-9._/-], alphanumeric at both ends')
    if (typeof x !== 'string' || x.length > 256) throw invalidArgument(`labels.${k}`, 'label values are strings of at most 256 characters')
  }
  return v as Record<string, string>
}

/** An owner: a string of 1..128 characters, or null. */
export function checkOwner(v: unknown): string | null {
  if (v === null) return null
  if (typeof v !== 'string' || v.length < 1 || v.length > 128) throw invalidArgument('owner', 'owner is a string of 1..128 characters, or null')
  return v
}

/** RFC 7396 on a flat object: a null member is removed (an id list becomes empty; `state` returns to `started`). */
export function mergeFlat(cur: object, patch: unknown): unknown {
  if (!isPlainObject(patch)) return patch
  const out: Record<string, unknown> = { ...cur }
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k]
    else out[k] = v
  }
  return out
}

/** INVALID_ARGUMENT unless `format` is one of `known` (checked before any I/O). */
export function checkFormat(format: string, known: readonly string[]): void {
  if (!known.includes(format)) throw invalidArgument('format', `${JSON.stringify(clip(String(format), 32))} is not one of ${known.join(', ')}`)
}
