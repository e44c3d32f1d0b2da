import fs from 'node:fs'
import { ApmatrixError } from '../domain/errors.js'
import { isId } from '../domain/ids.js'
import type { AdapterMode, HardwareProfile, ProfileAdapter } from './api.js'

/** Names of the builtin hardware profiles. */
export type BuiltinProfileName = 'spec-fixture' | 'demo' | 'full'

const FULL_QCI = { apxa: true, qact: true, apsc: true, rc8a: true, apsb: false, na: 255, nd: 255 }
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i)

function specFixture(): HardwareProfile {
  // docs/kernel-model.md §7 setup.
  return {
    name: 'spec-fixture',
    description: 'docs/kernel-model.md §7: CEX8 adapters 0x05 (CCA), 0x06 (accel), 0x07 (EP11); domains 0x04, 0x47, 0xab, 0xff',
    qci: { ...FULL_QCI },
    adapters: [
      { apid: 0x05, rawType: 14, mode: 'cca' },
      { apid: 0x06, rawType: 14, mode: 'accel' },
      { apid: 0x07, rawType: 14, mode: 'ep11' },
    ],
    domains: [0x04, 0x47, 0xab, 0xff],
    controlDomains: [0x04, 0x47, 0xab, 0xff],
    modules: { vfio_ap: true },
  }
}

function demo(): HardwareProfile {
  return {
    name: 'demo',
    description: 'A small LPAR: three CEX7 and three CEX8 adapters in all three modes, six usage domains',
    qci: { ...FULL_QCI },
    adapters: [
      { apid: 0x00, rawType: 13, mode: 'cca' },
      { apid: 0x01, rawType: 13, mode: 'accel' },
      { apid: 0x02, rawType: 13, mode: 'ep11' },
      { apid: 0x05, rawType: 14, mode: 'cca' },
      { apid: 0x06, rawType: 14, mode: 'accel' },
      { apid: 0x07, rawType: 14, mode: 'ep11' },
    ],
    domains: [0x01, 0x02, 0x04, 0x05, 0x0a, 0x47],
    controlDomains: [0x01, 0x02, 0x04, 0x05, 0x0a, 0x0b, 0x47],
    modules: { vfio_ap: true },
  }
}

function full(): HardwareProfile {
  const modes: AdapterMode[] = ['cca', 'accel', 'ep11']
  return {
    name: 'full',
    description: 'The architectural maximum: 256 CEX8 adapters x 256 domains (65,536 queues)',
    qci: { ...FULL_QCI },
    adapters: range(256).map((apid) => ({ apid, rawType: 14, mode: modes[apid % 3]! })),
    domains: range(256),
    controlDomains: range(256),
    modules: { vfio_ap: true },
  }
}

const builders: Record<BuiltinProfileName, () => HardwareProfile> = { 'spec-fixture': specFixture, demo, full }

/** The builtin profiles (each access returns a fresh copy, so callers may mutate it). */
export const builtinProfiles: Record<BuiltinProfileName, HardwareProfile> = Object.defineProperties({} as Record<BuiltinProfileName, HardwareProfile>, {
  'spec-fixture': { get: specFixture, enumerable: true },
  demo: { get: demo, enumerable: true },
  full: { get: full, enumerable: true },
})

/** True for the name of a builtin profile. */
export function isBuiltinProfile(name: string): name is BuiltinProfileName {
  return Object.hasOwn(builders, name)
}

/**
 * A builtin profile by name, or a JSON profile file by path (validated; see PROFILES.md).
 * Throws ApmatrixError INVALID_ARGUMENT (bad file content) or NOT_FOUND (no such name or file).
 */
export function loadProfile(nameOrPath: string): HardwareProfile {
  if (isBuiltinProfile(nameOrPath)) return builders[nameOrPath]()
  let text: string
  try {
    text = fs.readFileSync(nameOrPath, 'utf8')
  } catch (e) {
    throw new ApmatrixError('NOT_FOUND', `profile '${nameOrPath}' is neither a builtin (${Object.keys(builders).join(', ')}) nor a readable file`, { cause: e })
  }
  let obj: unknown
  try {
    obj = JSON.parse(text)
  } catch (e) {
    throw new ApmatrixError('INVALID_ARGUMENT', `profile ${nameOrPath}: not valid JSON: ${(e as Error).message}`, { cause: e })
  }
  return validateProfile(obj, nameOrPath)
}

function fail(where: string, field: string, msg: string): never {
  throw new ApmatrixError('INVALID_ARGUMENT', `${where}: ${field}: ${msg}`, { violations: [{ rule: 'INVALID_ARGUMENT', field, message: msg }] })
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function checkKeys(where: string, field: string, o: Record<string, unknown>, allowed: string[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) fail(where, field ? `${field}.${k}` : k, 'unknown field')
}

function idList(where: string, field: string, v: unknown): number[] {
  if (!Array.isArray(v)) fail(where, field, 'expected an array of ids 0..255')
  if (v.length > 256) fail(where, field, 'at most 256 ids')
  v.forEach((x, i) => {
    if (!isId(x)) fail(where, `${field}[${i}]`, `expected an integer 0..255, got ${JSON.stringify(x)}`)
  })
  if (new Set(v).size !== v.length) fail(where, field, 'duplicate ids')
  return [...(v as number[])]
}

function optBool(where: string, field: string, v: unknown): boolean | undefined {
  if (v !== undefined && typeof v !== 'boolean') fail(where, field, 'expected true or false')
  return v as boolean | undefined
}

function optInt(where: string, field: string, v: unknown, min: number, max: number): number | undefined {
  if (v === undefined) return undefined
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail(where, field, `expected an integer ${min}..${max}`)
  return v
}

/**
 * Checks an untrusted object (a parsed JSON profile file) and returns a clean HardwareProfile copy.
 * Unknown fields are rejected. Throws ApmatrixError INVALID_ARGUMENT naming the offending field.
 */
export function validateProfile(obj: unknown, where = 'profile'): HardwareProfile {
  if (!isObj(obj)) fail(where, '(root)', 'expected a JSON object')
  checkKeys(where, '', obj, ['name', 'description', 'qci', 'adapters', 'domains', 'controlDomains', 'boot', 'modules', 'resetMs'])
  if (typeof obj.name !== 'string' || obj.name.length === 0 || obj.name.length > 100) fail(where, 'name', 'expected a string of 1..100 characters')
  if (obj.description !== undefined && (typeof obj.description !== 'string' || obj.description.length > 1000)) {
    fail(where, 'description', 'expected a string of at most 1000 characters')
  }
  let qci: HardwareProfile['qci'] = null
  if (obj.qci !== null) {
    const q = obj.qci
    if (!isObj(q)) fail(where, 'qci', 'expected an object or null (no QCI)')
    checkKeys(where, 'qci', q, ['apxa', 'qact', 'apsc', 'rc8a', 'apsb', 'na', 'nd'])
    qci = {
      apxa: optBool(where, 'qci.apxa', q.apxa) ?? true,
      qact: optBool(where, 'qci.qact', q.qact) ?? true,
      apsc: optBool(where, 'qci.apsc', q.apsc) ?? true,
      rc8a: optBool(where, 'qci.rc8a', q.rc8a) ?? true,
      apsb: optBool(where, 'qci.apsb', q.apsb) ?? false,
      na: optInt(where, 'qci.na', q.na, 0, 255) ?? 255,
      nd: optInt(where, 'qci.nd', q.nd, 0, 255) ?? 255,
    }
  }
  if (!Array.isArray(obj.adapters)) fail(where, 'adapters', 'expected an array')
  if (obj.adapters.length > 256) fail(where, 'adapters', 'at most 256 adapters')
  const seen = new Set<number>()
  const adapters: ProfileAdapter[] = obj.adapters.map((a: unknown, i: number) => {
    const f = `adapters[${i}]`
    if (!isObj(a)) fail(where, f, 'expected an object')
    checkKeys(where, f, a, ['apid', 'rawType', 'mode', 'functions', 'depth', 'config', 'chkstop', 'serviceMs'])
    if (!isId(a.apid)) fail(where, `${f}.apid`, 'expected an integer 0..255')
    if (seen.has(a.apid)) fail(where, `${f}.apid`, `duplicate apid ${a.apid}`)
    seen.add(a.apid)
    const rawType = optInt(where, `${f}.rawType`, a.rawType, 0, 255)
    if (rawType === undefined) fail(where, `${f}.rawType`, 'required (10 = CEX4 .. 14 = CEX8)')
    if (a.mode !== 'cca' && a.mode !== 'ep11' && a.mode !== 'accel') fail(where, `${f}.mode`, "expected 'cca', 'ep11' or 'accel'")
    const out: ProfileAdapter = { apid: a.apid, rawType, mode: a.mode }
    const functions = optInt(where, `${f}.functions`, a.functions, 0, 0xffffffff)
    if (functions !== undefined) out.functions = functions
    const depth = optInt(where, `${f}.depth`, a.depth, 0, 255)
    if (depth !== undefined) out.depth = depth
    const config = optBool(where, `${f}.config`, a.config)
    if (config !== undefined) out.config = config
    const chkstop = optBool(where, `${f}.chkstop`, a.chkstop)
    if (chkstop !== undefined) out.chkstop = chkstop
    const serviceMs = optInt(where, `${f}.serviceMs`, a.serviceMs, 0, 3_600_000)
    if (serviceMs !== undefined) out.serviceMs = serviceMs
    return out
  })
  const p: HardwareProfile = {
    name: obj.name,
    qci,
    adapters,
    domains: idList(where, 'domains', obj.domains),
    controlDomains: idList(where, 'controlDomains', obj.controlDomains ?? []),
  }
  if (typeof obj.description === 'string') p.description = obj.description
  if (obj.boot !== undefined) {
    const b = obj.boot
    if (!isObj(b)) fail(where, 'boot', 'expected an object')
    checkKeys(where, 'boot', b, ['apmask', 'aqmask', 'domain'])
    p.boot = {}
    for (const k of ['apmask', 'aqmask'] as const) {
      if (b[k] === undefined) continue
      if (typeof b[k] !== 'string' || b[k].length > 300) fail(where, `boot.${k}`, 'expected a mask string like "+0-255,-4" or "0xff00"')
      p.boot[k] = b[k]
    }
    const d = optInt(where, 'boot.domain', b.domain, 0, 255)
    if (d !== undefined) p.boot.domain = d
  }
  if (obj.modules !== undefined) {
    const m = obj.modules
    if (!isObj(m)) fail(where, 'modules', 'expected an object')
    checkKeys(where, 'modules', m, ['vfio_ap'])
    p.modules = {}
    const v = optBool(where, 'modules.vfio_ap', m.vfio_ap)
    if (v !== undefined) p.modules.vfio_ap = v
  }
  const r = optInt(where, 'resetMs', obj.resetMs, 0, 3_600_000)
  if (r !== undefined) p.resetMs = r
  return p
}
