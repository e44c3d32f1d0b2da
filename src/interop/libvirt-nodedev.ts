import type { Violation } from '../domain/errors.js'
import { FULL_LIMITS, normalizeUuid, type MdevDesired, type MdevSpec, type MdevState } from '../domain/mdev.js'
import type { InteropImportOptions } from './mdevctl.js'
import { MAX_ATTRS, quote, specFromAttrs, specToAttrs, throwIfViolations, VFIO_AP_MDEV_TYPE, type LocatedAttr } from './vfio-ap-attrs.js'
import { escapeXmlAttr, escapeXmlText, parseXml, type XmlElement } from './xml.js'

/** libvirt's node-device name of the vfio_ap matrix device, the parent of every matrix mdev. */
export const LIBVIRT_MATRIX_PARENT = 'ap_matrix'

/** libvirt's node-device name of an mdev: `mdev_` and the UUID with `_` for `-`. */
export function libvirtNodedevName(uuid: string): string {
  return `mdev_${normalizeUuid(uuid).replace(/-/g, '_')}`
}

/**
 * The node-device XML of a matrix device, in the form `virsh nodedev-define` reads and
 * `virsh nodedev-dumpxml --inactive` prints (libvirt formatnode): name, parent `ap_matrix`, and an `mdev`
 * capability with the type, the UUID and the ordered `attr` writes of {@link specToAttrs}. libvirt keeps
 * autostart apart from the XML (`virsh nodedev-autostart`), so `spec.state` is not in it, nor are labels
 * and owner. Validates against libvirt's `nodedev` schema.
 */
export function formatLibvirtNodedev(device: { uuid: string; spec: MdevSpec }): string {
  const uuid = normalizeUuid(device.uuid)
  const attrs = specToAttrs(device.spec).map((a) => `    <attr name='${escapeXmlAttr(a.name)}' value='${escapeXmlAttr(a.value)}'/>\n`)
  return (
    '<device>\n' +
    `  <name>${libvirtNodedevName(uuid)}</name>\n` +
    `  <parent>${LIBVIRT_MATRIX_PARENT}</parent>\n` +
    "  <capability type='mdev'>\n" +
    `    <type id='${VFIO_AP_MDEV_TYPE}'/>\n` +
    `    <uuid>${escapeXmlText(uuid)}</uuid>\n` +
    attrs.join('') +
    '  </capability>\n' +
    '</device>\n'
  )
}

/** Options of {@link importLibvirtNodedev}: the state to give the device, since the XML carries none. */
export interface LibvirtNodedevImportOptions extends InteropImportOptions {
  /** Default `stopped`: `virsh nodedev-define` defines a device without starting it. */
  state?: MdevState
}

// The children the nodedev schema allows; the read-only ones (path, devnode, driver, iommuGroup, parent_addr)
// are accepted and ignored, so `virsh nodedev-dumpxml` output imports as is.
const DEVICE_CHILDREN = new Set(['name', 'path', 'devnode', 'parent', 'driver', 'capability'])
const MDEV_CAP_CHILDREN = new Set(['type', 'uuid', 'iommuGroup', 'parent_addr', 'attr'])
// `matrix` is what libvirt shows for a definition whose parent it cannot resolve (mdevctl's own name).
const PARENTS = new Set([LIBVIRT_MATRIX_PARENT, 'matrix'])

/**
 * Imports one node-device XML document of a matrix device. Requires the root `<device>`, at most one
 * `<parent>` that is `ap_matrix` (or mdevctl's `matrix`), exactly one `<capability type='mdev'>` with
 * `<type id='vfio_ap-passthrough'/>`, a `<uuid>` (any case; returned lowercase) and `<attr name value>`
 * writes replayed in document order by {@link specFromAttrs}. `<name>` is ignored, as libvirt ignores it
 * on define. Unknown elements and attributes are refused. Throws one INVALID_ARGUMENT (or OUT_OF_RANGE when
 * every problem is an id above the limits) listing every violation with its line.
 */
export function importLibvirtNodedev(xml: string, opts: LibvirtNodedevImportOptions = {}): MdevDesired {
  const root = parseXml(xml, 'nodedev XML')
  const violations: Violation[] = []
  const bad = (el: XmlElement, message: string): void => {
    const field = `line ${el.line}: <${el.name}>`
    violations.push({ rule: 'INVALID_ARGUMENT', field, message: `${field}: ${message}` })
  }
  const noAttrs = (el: XmlElement, allowed: string[] = []): void => {
    for (const a of el.attrs.keys()) if (!allowed.includes(a)) bad(el, `unknown attribute '${a}'`)
  }
  const textOf = (el: XmlElement): string => {
    if (el.children.length > 0) bad(el, `unexpected child <${el.children[0]!.name}> (line ${el.children[0]!.line})`)
    return el.text.trim()
  }

  if (root.name !== 'device') {
    bad(root, 'the root element of a node-device XML must be <device>')
    throwIfViolations(violations, 'nodedev XML')
  }
  noAttrs(root)
  const caps: XmlElement[] = []
  let parents = 0
  for (const el of root.children) {
    if (!DEVICE_CHILDREN.has(el.name)) bad(el, `unknown element in <device>; expected one of ${[...DEVICE_CHILDREN].join(', ')}`)
    else if (el.name === 'parent') {
      if (++parents > 1) bad(el, 'more than one <parent>')
      noAttrs(el)
      const p = textOf(el)
      if (!PARENTS.has(p)) bad(el, `${quote(p)} is not '${LIBVIRT_MATRIX_PARENT}', the parent of every matrix device`)
    } else if (el.name === 'capability') caps.push(el)
  }
  if (caps.length !== 1) {
    bad(root, `must have exactly one <capability type='mdev'>, found ${caps.length} <capability> elements`)
    throwIfViolations(violations, 'nodedev XML')
  }
  const cap = caps[0]!
  noAttrs(cap, ['type'])
  if (cap.attrs.get('type') !== 'mdev') bad(cap, `type ${quote(cap.attrs.get('type') ?? '')} is not 'mdev'`)
  if (cap.text.trim() !== '') bad(cap, 'unexpected text')

  let uuid: string | undefined
  let types = 0
  let uuids = 0
  const attrs: LocatedAttr[] = []
  for (const el of cap.children) {
    if (!MDEV_CAP_CHILDREN.has(el.name)) {
      bad(el, `unknown element in the mdev capability; expected one of ${[...MDEV_CAP_CHILDREN].join(', ')}`)
    } else if (el.name === 'type') {
      if (++types > 1) bad(el, 'more than one <type>')
      noAttrs(el, ['id'])
      textOf(el)
      const id = el.attrs.get('id')
      if (id !== VFIO_AP_MDEV_TYPE) bad(el, `id ${id === undefined ? 'missing' : quote(id)} is not '${VFIO_AP_MDEV_TYPE}' (V-3)`)
    } else if (el.name === 'uuid') {
      if (++uuids > 1) bad(el, 'more than one <uuid>')
      noAttrs(el)
      const text = textOf(el)
      try {
        uuid = normalizeUuid(text, `line ${el.line}: <uuid>`)
      } catch {
        bad(el, `${quote(text)} is not a UUID (8-4-4-4-12 hex digits)`)
      }
    } else if (el.name === 'attr') {
      noAttrs(el, ['name', 'value'])
      textOf(el)
      const name = el.attrs.get('name')
      const value = el.attrs.get('value')
      if (name === undefined || value === undefined) bad(el, `needs both name and value attributes`)
      else attrs.push({ name, value, where: `line ${el.line}: <attr>` })
    }
  }
  if (types === 0) bad(cap, `missing <type id='${VFIO_AP_MDEV_TYPE}'/>`)
  if (uuids === 0) bad(cap, 'missing <uuid>: apmatrix needs the UUID of the device')
  if (attrs.length > MAX_ATTRS) bad(cap, `more than ${MAX_ATTRS} <attr> elements`)
  const spec = specFromAttrs(attrs.length > MAX_ATTRS ? [] : attrs, opts.state ?? 'stopped', violations, opts.limits ?? FULL_LIMITS)
  throwIfViolations(violations, 'nodedev XML')
  return { uuid: uuid!, spec }
}
