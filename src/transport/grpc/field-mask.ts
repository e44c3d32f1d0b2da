/**
 * UpdateMdev's `update_mask` (google.protobuf.FieldMask) as a field update for the service
 * (`ApmatrixService.updateMdevFields`, the same write path as REST PATCH). Paths: `spec`,
 * `spec.adapters`, `spec.domains`, `spec.control_domains`, `spec.state`, `spec.drain`, `labels`, `labels.<key>`, `owner`.
 */
import { ApmatrixError } from '../../domain/errors.js'
import type { UpdateMdevRequest__Output } from '../../generated/grpc/apmatrix/v1/UpdateMdevRequest.js'
import type { MdevFieldsUpdate } from '../../service/index.js'
import { drainIn, specIn } from './convert.js'
import { clip } from '../../domain/text.js'

const SPEC_FIELDS: Record<string, string> = { adapters: 'adapters', domains: 'domains', control_domains: 'controlDomains', state: 'state', drain: 'drain' }
const MAX_PATHS = 100

/**
 * The field update of a non-empty mask: `labels` replaces the whole map (the service computes the
 * removed keys from the device it reads under the host lock), `labels.<key>` sets or removes one label.
 * INVALID_ARGUMENT for an unknown path.
 */
export function maskToUpdate(req: UpdateMdevRequest__Output): MdevFieldsUpdate {
  const paths = req.update_mask?.paths ?? []
  if (paths.length > MAX_PATHS) throw bad(['update_mask'], `at most ${MAX_PATHS} paths`)
  const spec: NonNullable<MdevFieldsUpdate['spec']> = {}
  const labelChanges: Record<string, string | null> = {}
  const update: MdevFieldsUpdate = {}
  let wholeSpec = false
  const unknown: string[] = []
  for (const p of paths) {
    if (p === 'spec') {
      wholeSpec = true
    } else if (p.startsWith('spec.') && SPEC_FIELDS[p.slice(5)]) {
      const f = p.slice(5)
      const v = req.spec ? (req.spec as unknown as Record<string, unknown>)[f] : undefined
      // `spec.state` empty, `spec.drain` absent: back to the default.
      ;(spec as Record<string, unknown>)[SPEC_FIELDS[f]!] = f === 'state' ? (v ? v : null) : f === 'drain' ? (drainIn(req.spec?.drain) ?? null) : (v ?? [])
    } else if (p === 'labels') {
      update.labels = { ...req.labels }
    } else if (p.startsWith('labels.') && p.length > 7) {
      const k = p.slice(7)
      labelChanges[k] = Object.hasOwn(req.labels, k) ? req.labels[k]! : null
    } else if (p === 'owner') {
      update.owner = req.owner || null
    } else {
      unknown.push(p)
    }
  }
  if (unknown.length)
    throw bad(
      unknown,
      'unknown update_mask path (spec, spec.adapters, spec.domains, spec.control_domains, spec.state, spec.drain, labels, labels.<key>, owner)',
    )
  if (wholeSpec) {
    const s = specIn(req.spec)
    update.spec = { adapters: s.adapters ?? [], domains: s.domains ?? [], controlDomains: s.controlDomains ?? [], state: s.state ?? 'started', ...spec }
  } else if (Object.keys(spec).length) {
    update.spec = spec
  }
  if (Object.keys(labelChanges).length) update.labelChanges = labelChanges
  return update
}

function bad(paths: string[], message: string): ApmatrixError {
  const violations = paths.slice(0, 100).map((p) => ({ rule: 'INVALID_ARGUMENT' as const, field: `update_mask.${clip(p, 128)}`, message }))
  return new ApmatrixError('INVALID_ARGUMENT', `update_mask: ${message}: ${paths.slice(0, 5).join(', ')}`, { violations })
}
