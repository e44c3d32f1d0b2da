/** Shared fixtures of the interop tests. */
import crypto from 'node:crypto'
import fc from 'fast-check'
import { ApmatrixError } from '../../src/domain/errors.js'
import type { MdevDesired } from '../../src/domain/mdev.js'

/** The ApmatrixError `fn` throws; any other outcome fails the caller's test. */
export function errorOf(fn: () => unknown): ApmatrixError {
  try {
    fn()
  } catch (e) {
    if (e instanceof ApmatrixError) return e
    throw e
  }
  throw new Error('did not throw')
}

/** Every id 0..255 (a device with a full matrix). */
export function allIds(): number[] {
  return Array.from({ length: 256 }, (_, i) => i)
}

/** A device with a fresh random UUID and the given spec fields (empty and `started` otherwise). */
export function newDevice(spec: Partial<MdevDesired['spec']>): MdevDesired {
  return { uuid: crypto.randomUUID(), spec: { adapters: [], domains: [], controlDomains: [], state: 'started', ...spec } }
}

const idList = fc.uniqueArray(fc.integer({ min: 0, max: 255 }), { maxLength: 40 }).map((a) => a.sort((x, y) => x - y))

/** Normalized matrix devices (lowercase UUID, sorted unique ids), as the domain layer keeps them. */
export const arbDevice: fc.Arbitrary<MdevDesired> = fc.record({
  uuid: fc.uuid().map((u) => u.toLowerCase()),
  spec: fc.record({ adapters: idList, domains: idList, controlDomains: idList, state: fc.constantFrom('started' as const, 'stopped' as const) }),
})
