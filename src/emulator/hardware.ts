import { ApmatrixError } from '../domain/errors.js'
import { isId } from '../domain/ids.js'
import type { AdapterMode, HardwareAction } from './api.js'
import { FN_ACCEL, FN_CCA, FN_EP11, FN_MODE_MASK, type Machine, defaultFunctions } from './machine.js'

/**
 * Parses a zcrypt-style type name (`CEX8C`, `CEX7A`, `CEX3C`, `CEX4P`): raw type n + 6 (CEX4 = 10,
 * CEX2A = 6, O-6) and the mode from the letter. Undefined for anything else.
 */
export function parseTypeName(s: string): { rawType: number; mode: AdapterMode } | undefined {
  const m = /^CEX([2-9])([ACPX])$/i.exec(s)
  if (!m) return undefined
  const letter = m[2]!.toUpperCase()
  return { rawType: Number(m[1]) + 6, mode: letter === 'A' ? 'accel' : letter === 'C' ? 'cca' : 'ep11' }
}

function bad(msg: string): never {
  throw new ApmatrixError('INVALID_ARGUMENT', msg)
}

function needId(v: unknown, field: string): number {
  if (!isId(v)) bad(`${field}: expected an integer 0..255, got ${JSON.stringify(v)}`)
  return v
}

/**
 * Applies a hardware action to the machine (hostcfg and TAPQ answers). The bus does not see it until
 * its next scan (B-43); the host runs that scan at once when `notify` is not false.
 * Throws ApmatrixError INVALID_ARGUMENT / NOT_FOUND.
 */
export function applyHardwareAction(machine: Machine, a: HardwareAction): void {
  switch (a.action) {
    case 'config-off':
    case 'config-on':
    case 'checkstop':
    case 'checkstop-clear': {
      const apid = needId(a.apid, 'apid')
      const hw = machine.adapters.get(apid) ?? notFound(`adapter ${apid} is not in the hardware table`)
      const flag = a.action === 'config-off' || a.action === 'config-on' ? 'config' : 'chkstop'
      const on = a.action === 'config-on' || a.action === 'checkstop'
      if (a.apqi === undefined) {
        hw[flag] = on
      } else {
        const key = (apid << 8) | needId(a.apqi, 'apqi')
        const o = machine.queueOverrides.get(key) ?? {}
        o[flag] = on
        machine.queueOverrides.set(key, o)
      }
      break
    }
    case 'add-adapter': {
      const apid = needId(a.apid, 'apid')
      const fromType = a.type !== undefined ? (parseTypeName(a.type) ?? bad(`type: '${a.type}' is not like CEX8C`)) : undefined
      const rawType = a.rawType ?? fromType?.rawType ?? 14
      if (!Number.isInteger(rawType) || rawType < 0 || rawType > 255) bad(`rawType: expected 0..255, got ${rawType}`)
      const mode = a.mode ?? fromType?.mode ?? 'cca'
      machine.adapters.set(apid, {
        apid,
        rawType,
        functions: (a.functions ?? defaultFunctions(mode)) >>> 0,
        depth: 8,
        config: true,
        chkstop: false,
        serviceMs: 5,
      })
      machine.apm = machine.apm.with(apid)
      break
    }
    case 'remove-adapter': {
      const apid = needId(a.apid, 'apid')
      machine.apm = machine.apm.with(apid, false)
      machine.adapters.delete(apid)
      break
    }
    case 'add-domain':
    case 'remove-domain': {
      const apqi = needId(a.apqi, 'apqi')
      const on = a.action === 'add-domain'
      if (a.control) machine.adm = machine.adm.with(apqi, on)
      else machine.aqm = machine.aqm.with(apqi, on)
      break
    }
    case 'set-mode': {
      const apid = needId(a.apid, 'apid')
      const hw = machine.adapters.get(apid) ?? notFound(`adapter ${apid} is not in the hardware table`)
      const bit = a.mode === 'cca' ? FN_CCA : a.mode === 'accel' ? FN_ACCEL : a.mode === 'ep11' ? FN_EP11 : bad(`mode: '${String(a.mode)}'`)
      hw.functions = ((hw.functions & ~FN_MODE_MASK) | bit) >>> 0
      break
    }
    default:
      bad(`action: unknown '${String((a as { action?: unknown }).action)}'`)
  }
  machine.version++
}

function notFound(msg: string): never {
  throw new ApmatrixError('NOT_FOUND', msg)
}
