/**
 * UpdateMdev's `update_mask` (google.protobuf.FieldMask) as a JSON merge patch for the service
 * (`ApmatrixService.patchMdev`), so gRPC and REST PATCH share one code path. Paths: `spec`,
 * `spec.adapters`, `spec.domains`, `spec.control_domains`, `spec.state`, `labels`, `labels.<key>`, `owner`.
 */
import { ApmatrixError } from '../../domain/errors.js'
import type { UpdateMdevRequest__Output } from '../../generated/grpc/apmatrix/v1/UpdateMdevRequest.js'
import { specIn } from './convert.js'
import { clip } from '../../domain/text.js'

const SPEC_FIELDS: Record<string, string> = { adapters: 'adapters', domains: 'domains', control_domains: 'controlDomains', state: 'state' }
const MAX_PATHS = 100

/**
 * The merge patch for a non-empty mask. `currentLabels` is needed only for the `labels` path (a whole
 * map replaced = the keys it drops set to null). INVALID_ARGUMENT for an unknown path.
 */
export function maskToPatch(req: UpdateMdevRequest__Output, currentLabels: Record<string, string> | null): Record<string, unknown> {
  const paths = req.update_mask?.paths ?? []
  if (paths.length > MAX_PATHS) throw bad(['update_mask'], `at most ${MAX_PATHS} paths`)
  const spec: Record<string, unknown> = {}
  const labels: Record<string, string | null> = {}
  const meta: Record<string, unknown> = {}
  let wholeSpec = false
  let touchedLabels = false
  const unknown: string[] = []
  for (const p of paths) {
    if (p === 'spec') {
      wholeSpec = true
    } else if (p.startsWith('spec.') && SPEC_FIELDS[p.slice(5)]) {
      const f = p.slice(5)
      const v = req.spec ? (req.spec as unknown as Record<string, unknown>)[f] : undefined
      // `spec.state` empty: back to the default.
      spec[SPEC_FIELDS[f]!] = f === 'state' ? (v ? v : null) : (v ?? [])
    } else if (p === 'labels') {
      touchedLabels = true
      for (const k of Object.keys(currentLabels ?? {})) labels[k] = null
      Object.assign(labels, req.labels)
    } else if (p.startsWith('labels.') && p.length > 7) {
      touchedLabels = true
      const k = p.slice(7)
      labels[k] = Object.hasOwn(req.labels, k) ? req.labels[k]! : null
    } else if (p === 'owner') {
      meta.owner = req.owner || null
    } else {
      unknown.push(p)
    }
  }
  if (unknown.length)
    throw bad(unknown, 'unknown update_mask path (spec, spec.adapters, spec.domains, spec.control_domains, spec.state, labels, labels.<key>, owner)')
  const patch: Record<string, unknown> = {}
  if (wholeSpec) {
    const s = specIn(req.spec)
    patch.spec = { adapters: s.adapters ?? [], domains: s.domains ?? [], controlDomains: s.controlDomains ?? [], state: s.state ?? 'started', ...spec }
  } else if (Object.keys(spec).length) {
    patch.spec = spec
  }
  if (touchedLabels) meta.labels = labels
  if (Object.keys(meta).length) patch.metadata = meta
  return patch
}

/** True when the mask names the whole label map (the handler must read the current labels). */
export function maskReplacesLabels(req: UpdateMdevRequest__Output): boolean {
  return (req.update_mask?.paths ?? []).includes('labels')
}

function bad(paths: string[], message: string): ApmatrixError {
  const violations = paths.slice(0, 100).map((p) => ({ rule: 'INVALID_ARGUMENT' as const, field: `update_mask.${clip(p, 128)}`, message }))
  return new ApmatrixError('INVALID_ARGUMENT', `update_mask: ${message}: ${paths.slice(0, 5).join(', ')}`, { violations })
}
