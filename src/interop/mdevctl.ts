import type { Violation } from '../domain/errors.js'
import { FULL_LIMITS, normalizeUuid, type HostLimits, type MdevDesired, type MdevSpec } from '../domain/mdev.js'
import { MAX_JSON_CHARS, parseJsonWithLines } from './json-lines.js'
import { MAX_ATTRS, quote, specFromAttrs, specToAttrs, throwIfViolations, VFIO_AP_MDEV_TYPE, type LocatedAttr } from './vfio-ap-attrs.js'
import { clip } from '../domain/text.js'

/** mdevctl's parent name for matrix devices: the `matrix` device of the vfio_ap driver. */
export const MDEVCTL_PARENT = 'matrix'

/** Where mdevctl keeps persistent definitions (one JSON file per device: `<dir>/<parent>/<uuid>`). */
export const MDEVCTL_CONFIG_DIR = '/etc/mdevctl.d'

/** mdevctl's start mode: `auto` starts the device when its parent appears (boot), `manual` only on request. */
export type MdevctlStart = 'auto' | 'manual'

/** One mdevctl definition: the content of `/etc/mdevctl.d/matrix/<uuid>`. Each attr object has one key. */
export interface MdevctlDefinition {
  mdev_type: string
  start: MdevctlStart
  attrs: Array<Record<string, string>>
}

/** A definition of a `mdevctl list --defined --dumpjson` document that the import left out, and why. */
export interface SkippedDefinition {
  parent: string
  uuid: string
  mdevType?: string
  reason: string
}

/** The matrix devices of an mdevctl document, plus the definitions of other parents it skipped. */
export interface MdevctlImport {
  devices: MdevDesired[]
  skipped: SkippedDefinition[]
}

/** Options of the imports: the host's id maxima to check against (default: 255, APXA). */
export interface InteropImportOptions {
  limits?: HostLimits
}

/** Path of the definition file mdevctl reads for this matrix device (`/etc/mdevctl.d/matrix/<uuid>`). */
export function mdevctlDefinitionPath(uuid: string): string {
  return `${MDEVCTL_CONFIG_DIR}/${MDEVCTL_PARENT}/${normalizeUuid(uuid)}`
}

/**
 * The mdevctl definition of a matrix device: `start` is `auto` for `started` (mdevctl creates it whenever the
 * parent appears) and `manual` for `stopped` (defined only); `attrs` are the ordered writes of
 * {@link specToAttrs} (adapters, domains, control domains, `0x` hex). Labels and owner have no place in
 * mdevctl's format and are not exported. Pure; never throws for a normalized spec.
 */
export function toMdevctlDefinition(device: { spec: MdevSpec }): MdevctlDefinition {
  return {
    mdev_type: VFIO_AP_MDEV_TYPE,
    start: device.spec.state === 'started' ? 'auto' : 'manual',
    attrs: specToAttrs(device.spec).map((a) => ({ [a.name]: a.value })),
  }
}

/** {@link toMdevctlDefinition} as the text of the definition file (two-space JSON and a final newline). */
export function formatMdevctlDefinition(device: { spec: MdevSpec }): string {
  return `${JSON.stringify(toMdevctlDefinition(device), null, 2)}\n`
}

const DEFINITION_KEYS = new Set(['mdev_type', 'start', 'attrs'])

/**
 * Imports a `mdevctl list --defined --dumpjson` document (text, or an already parsed value). Its shape, as
 * mdevctl 1.2 prints it and libvirt's tests record it: an array of objects keyed by parent name, each
 * parent a list of one-key objects `{ "<uuid>": { mdev_type, start, attrs? } }`.
 *
 * Definitions of parents other than `matrix` (vGPUs, vfio-ccw, ...) are not matrix devices: they are
 * returned in `skipped` with the reason, so a whole-host dump can be imported. Under `matrix` everything
 * must be right: the type `vfio_ap-passthrough`, `start` auto|manual (auto → started, manual → stopped),
 * a UUID (any case; returned lowercase) defined once, known attributes only, replayed in order by
 * {@link specFromAttrs}. Throws one INVALID_ARGUMENT (or OUT_OF_RANGE when every problem is an id above
 * the limits) listing every violation with its JSON path and, for text input, its line. Text is bounded
 * (1 MiB, {@link MAX_JSON_CHARS}); a caller passing an already parsed value bounds it itself (body limit).
 */
export function importMdevctlDump(doc: unknown, opts: InteropImportOptions = {}): MdevctlImport {
  const { value, lineOf } = parsed(doc, 'mdevctl dump')
  const r = new Reporter(lineOf)
  const bad = r.bad.bind(r)
  const devices: MdevDesired[] = []
  const skipped: SkippedDefinition[] = []
  const seen = new Map<string, string>()

  if (!Array.isArray(value)) {
    bad(value, '$', 'a mdevctl dump is a JSON array of objects keyed by parent (mdevctl list --defined --dumpjson)')
    throwIfViolations(r.violations, 'mdevctl dump')
  }
  ;(value as unknown[]).forEach((group, gi) => {
    const gpath = `$[${gi}]`
    if (!isObject(group)) {
      bad(group, gpath, 'must be an object keyed by parent device name')
      return
    }
    for (const [parent, list] of Object.entries(group)) {
      const ppath = `${gpath}[${JSON.stringify(parent)}]`
      if (!Array.isArray(list)) {
        bad(list, ppath, 'must be an array of { "<uuid>": definition } objects')
        continue
      }
      list.forEach((entry, ei) => {
        const epath = `${ppath}[${ei}]`
        const keys = isObject(entry) ? Object.keys(entry) : []
        if (!isObject(entry) || keys.length !== 1) {
          bad(entry, epath, 'must be an object with exactly one key, the device UUID')
          return
        }
        const uuidText = keys[0]!
        const def = entry[uuidText]
        const dpath = `${epath}[${JSON.stringify(uuidText)}]`
        if (parent !== MDEVCTL_PARENT) {
          const mdevType = isObject(def) && typeof def.mdev_type === 'string' ? def.mdev_type : undefined
          skipped.push({
            parent,
            uuid: uuidText,
            ...(mdevType === undefined ? {} : { mdevType }),
            reason: `parent '${parent}' is not the vfio_ap matrix device`,
          })
          return
        }
        let uuid: string
        try {
          uuid = normalizeUuid(uuidText, dpath)
        } catch {
          bad(entry, epath, `key ${quote(uuidText)} is not a UUID (8-4-4-4-12 hex digits)`)
          return
        }
        const first = seen.get(uuid)
        if (first !== undefined) {
          bad(entry, epath, `device ${uuid} is defined twice (first at ${first})`)
          return
        }
        seen.set(uuid, r.at(entry, epath))
        const device = definitionToDevice(uuid, def, dpath, r, opts.limits ?? FULL_LIMITS)
        if (device) devices.push(device)
      })
    }
  })
  throwIfViolations(r.violations, 'mdevctl dump')
  return { devices, skipped }
}

/**
 * Imports one mdevctl definition file (the content of `/etc/mdevctl.d/matrix/<uuid>`, or what
 * `mdevctl list --defined --dumpjson --uuid <uuid>` prints) for the device `uuid`. Same rules and errors
 * as {@link importMdevctlDump}.
 */
export function importMdevctlDefinition(uuid: string, doc: unknown, opts: InteropImportOptions = {}): MdevDesired {
  const canonical = normalizeUuid(uuid)
  const { value, lineOf } = parsed(doc, 'mdevctl definition')
  const r = new Reporter(lineOf)
  const device = definitionToDevice(canonical, value, '$', r, opts.limits ?? FULL_LIMITS)
  throwIfViolations(r.violations, 'mdevctl definition')
  return device!
}

function definitionToDevice(uuid: string, def: unknown, path: string, r: Reporter, limits: HostLimits): MdevDesired | undefined {
  const bad = r.bad.bind(r)
  if (!isObject(def)) {
    bad(def, path, 'a definition must be an object { mdev_type, start, attrs }')
    return undefined
  }
  const before = r.violations.length
  for (const key of Object.keys(def)) if (!DEFINITION_KEYS.has(key)) bad(def, `${path}.${key}`, 'unknown field')
  if (def.mdev_type !== VFIO_AP_MDEV_TYPE) {
    bad(def, `${path}.mdev_type`, `${describe(def.mdev_type)} is not '${VFIO_AP_MDEV_TYPE}', the only mdev type of the matrix parent (V-3)`)
  }
  if (def.start !== 'auto' && def.start !== 'manual') bad(def, `${path}.start`, `${describe(def.start)} is not 'auto' or 'manual'`)
  const attrs: LocatedAttr[] = []
  const raw = def.attrs ?? []
  if (!Array.isArray(raw)) bad(def, `${path}.attrs`, 'must be an array of { "<attribute>": "<value>" } objects')
  else if (raw.length > MAX_ATTRS) bad(raw, `${path}.attrs`, `more than ${MAX_ATTRS} attributes`)
  else {
    raw.forEach((item, i) => {
      const apath = `${path}.attrs[${i}]`
      const keys = isObject(item) ? Object.keys(item) : []
      // mdevctl itself refuses an attribute object with more than one field ("too many fields").
      if (!isObject(item) || keys.length !== 1) {
        bad(item, apath, 'must be an object with exactly one attribute name and its value')
        return
      }
      const name = keys[0]!
      const v = item[name]
      // A non-string value makes mdevctl 1.2 panic on `list`; the kernel only ever sees strings.
      if (typeof v !== 'string') {
        bad(item, `${apath}.${name}`, `the value must be a string, got ${describe(v)}`)
        return
      }
      attrs.push({ name, value: v, where: r.at(item, apath) })
    })
  }
  const spec = specFromAttrs(attrs, def.start === 'manual' ? 'stopped' : 'started', r.violations, limits)
  return r.violations.length > before ? undefined : { uuid, spec }
}

/** Collects violations, naming each by JSON path and, when the text was parsed here, by line. */
class Reporter {
  readonly violations: Violation[] = []

  constructor(private readonly lineOf: (node: object) => number | undefined) {}

  at(node: unknown, path: string): string {
    const line = typeof node === 'object' && node !== null ? this.lineOf(node) : undefined
    return line === undefined ? path : `${path} (line ${line})`
  }

  bad(node: unknown, path: string, message: string): void {
    this.violations.push({ rule: 'INVALID_ARGUMENT', field: path, message: `${this.at(node, path)}: ${message}` })
  }
}

function parsed(doc: unknown, field: string): { value: unknown; lineOf: (node: object) => number | undefined } {
  if (typeof doc === 'string') return parseJsonWithLines(doc, field)
  return { value: doc, lineOf: () => undefined }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function describe(v: unknown): string {
  if (v === undefined) return 'missing'
  if (typeof v === 'string') return quote(v)
  return clip(JSON.stringify(v) ?? String(v), 64)
}
