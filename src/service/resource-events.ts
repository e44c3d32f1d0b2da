/** The events the service appends for a change of a stored resource (docs/api.md (Resources) Event). Pure. */
import type { EventInput, HostMasksRecord, MdevRecord } from '../store/index.js'

/** An event of kind `mdev` about a stored device (`message` completes "matrix device <uuid> ..."). */
export function mdevEvent(r: MdevRecord, type: string, message: string): EventInput {
  return {
    host: r.host,
    kind: 'mdev',
    name: r.uuid,
    type,
    message: `matrix device ${r.uuid} ${message}`,
    data: { generation: r.generation, resourceVersion: r.resourceVersion, owner: r.owner },
  }
}

/** `MasksChanged` for the masks as stored now. */
export function masksChangedEvent(host: string, r: Pick<HostMasksRecord, 'apmask' | 'aqmask' | 'generation' | 'resourceVersion'>): EventInput {
  return {
    host,
    kind: 'masks',
    name: 'masks',
    type: 'MasksChanged',
    message: `apmask ${r.apmask} aqmask ${r.aqmask}`,
    data: { generation: r.generation, resourceVersion: r.resourceVersion },
  }
}
