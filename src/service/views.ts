/** Maps store records and observed state to the service's plain output shapes (types.ts). */
import { Mask, parseAbsoluteMask } from '../domain/mask.js'
import type { HostMasksRecord, MdevRecord } from '../store/index.js'
import type { MaskPair, MasksView, MdevView } from './types.js'

/** The API object of a stored matrix device. */
export function mdevView(r: MdevRecord): MdevView {
  return {
    metadata: {
      uuid: r.uuid,
      host: r.host,
      generation: r.generation,
      resourceVersion: r.resourceVersion,
      createdAt: r.createdAt.toISOString(),
      updatedAt: r.updatedAt.toISOString(),
      labels: { ...r.labels },
      owner: r.owner,
      origin: r.origin,
      deletionRequestedAt: r.deletionRequestedAt ? r.deletionRequestedAt.toISOString() : null,
      force: r.force,
    },
    spec: { ...r.spec, drain: r.spec.drain ?? null },
    status: r.status as MdevView['status'],
  }
}

/** A mask pair as returned: kernel text (B-20) and id lists. */
export function maskPair(apmask: Mask, aqmask: Mask): MaskPair {
  return { apmask: apmask.toString(), aqmask: aqmask.toString(), apmaskIds: apmask.ids(), aqmaskIds: aqmask.ids() }
}

/** Parses a mask in the kernel's read format (`0x` + 64 hex digits, B-20), as stored and observed. */
export function readMask(text: string): Mask {
  const p = parseAbsoluteMask(text.trim())
  if (!p.ok) throw new RangeError(`not a mask in the kernel's read format: ${text}`)
  return p.mask
}

/** The masks object: stored spec (kernel default all ones when never set) and the observed masks. */
export function masksView(host: string, rec: HostMasksRecord | null, observed: { apmask: string; aqmask: string; at: Date } | null): MasksView {
  return {
    metadata: {
      host,
      generation: rec?.generation ?? 0,
      resourceVersion: rec?.resourceVersion ?? '',
      updatedAt: (rec?.updatedAt ?? new Date(0)).toISOString(),
    },
    spec: rec ? maskPair(readMask(rec.apmask), readMask(rec.aqmask)) : maskPair(Mask.full(), Mask.full()),
    status: observed
      ? {
          ...maskPair(readMask(observed.apmask), readMask(observed.aqmask)),
          observedAt: observed.at.toISOString(),
          lostRequests: rec?.status.lostRequests ?? 0,
        }
      : null,
  }
}
