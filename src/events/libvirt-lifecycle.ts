/**
 * libvirt node-device lifecycle names (docs/api.md (Resources) Event, issue 4 §2) and the apmatrix event types they
 * stand for. One-to-one on a subset of our types:
 *
 * | libvirt (virNodeDeviceEventLifecycleType / event id) | apmatrix type  | emitted by                                   |
 * |------------------------------------------------------|----------------|----------------------------------------------|
 * | `CREATED`  (VIR_NODE_DEVICE_EVENT_CREATED)           | `MdevStarted`  | reconciler: the mdev was created on the bus  |
 * | `DELETED`  (VIR_NODE_DEVICE_EVENT_DELETED)           | `MdevStopped`  | reconciler: the mdev was removed from the bus|
 * | `DEFINED`  (VIR_NODE_DEVICE_EVENT_DEFINED)           | `MdevDefined`  | service: create, apply, import               |
 * | `UNDEFINED` (VIR_NODE_DEVICE_EVENT_UNDEFINED)        | `MdevUndefined`| service: delete requested, omitted by apply  |
 * | `UPDATE`   (VIR_NODE_DEVICE_EVENT_ID_UPDATE)         | `MdevUpdated`  | service: the stored definition changed       |
 *
 * libvirt reports a live change of an active device's attributes as UPDATE too; apmatrix keeps that
 * apart as `MdevReconfigured` (the reconciler rewrote the matrix on the bus), which has no libvirt name,
 * so that the map stays one-to-one. Every other type (masks, queues, hosts, ...) has no libvirt name.
 */
import { isUuid } from '../domain/mdev.js'
import { libvirtNodedevName } from '../interop/libvirt-nodedev.js'

/** The libvirt node-device lifecycle names apmatrix maps. */
export const LIBVIRT_LIFECYCLE_NAMES = ['CREATED', 'DELETED', 'DEFINED', 'UNDEFINED', 'UPDATE'] as const
export type LibvirtLifecycleName = (typeof LIBVIRT_LIFECYCLE_NAMES)[number]

/** libvirt lifecycle name → apmatrix event type (see the file comment). */
export const LIBVIRT_TO_EVENT_TYPE: Readonly<Record<LibvirtLifecycleName, string>> = Object.freeze({
  CREATED: 'MdevStarted',
  DELETED: 'MdevStopped',
  DEFINED: 'MdevDefined',
  UNDEFINED: 'MdevUndefined',
  UPDATE: 'MdevUpdated',
})

/** apmatrix event type → libvirt lifecycle name: the inverse of {@link LIBVIRT_TO_EVENT_TYPE}. */
export const EVENT_TYPE_TO_LIBVIRT: ReadonlyMap<string, LibvirtLifecycleName> = new Map(
  LIBVIRT_LIFECYCLE_NAMES.map((n) => [LIBVIRT_TO_EVENT_TYPE[n], n] as const),
)

/** The libvirt lifecycle name of an event of kind `mdev`, or null when libvirt has none for it. Pure. */
export function libvirtLifecycleOf(e: { kind: string; type: string }): LibvirtLifecycleName | null {
  return e.kind === 'mdev' ? (EVENT_TYPE_TO_LIBVIRT.get(e.type) ?? null) : null
}

/**
 * An event as libvirt would report it: the lifecycle name and the node-device name of the matrix device
 * (`mdev_<uuid with _>`, as in the exported node-device XML), or null when libvirt has no name for it. Pure.
 */
export function toLibvirtEvent(e: { kind: string; type: string; name: string }): { lifecycle: LibvirtLifecycleName; device: string } | null {
  const lifecycle = libvirtLifecycleOf(e)
  if (!lifecycle || !isUuid(e.name)) return null
  return { lifecycle, device: libvirtNodedevName(e.name) }
}
