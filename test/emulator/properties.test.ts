/**
 * Property-based tests over random operation sequences on the emulator (`spec-fixture`, docs/kernel-model.md §7),
 * driven only through its public contract (src/emulator/api.ts): the sequences and the checks after every
 * step are test/emulator/kernel-properties.ts (shared with the run through the FUSE mount,
 * test/reliability/fuse-properties.test.ts); fast-check prints the seed and the shrunk operation list on failure.
 */
import t from 'tap'
import fc from 'fast-check'
import { ApmatrixError, SysfsError } from '../../src/domain/errors.js'
import type { EmulatedHostApi, KernelProfileName } from '../../src/emulator/api.js'
import { createHost } from '../../src/emulator/host.js'
import { BUS, checkStep, DEVICES, invariantViolations, isMutating, MATRIX, type Op, opArb, PRELUDE, show, snapshot, UUIDS } from './kernel-properties.js'

// ---- execution ----

function apply(host: EmulatedHostApi, op: Op): void {
  switch (op.op) {
    case 'write':
      host.write(op.path, op.value)
      return
    case 'guestOpen':
      host.guestOpen(op.uuid, op.guest)
      return
    case 'guestClose':
      host.guestClose(op.uuid)
      return
    case 'requests':
      host.submitRequests(op.apqn, op.count)
      return
    case 'hardware':
      host.hardware(op.action)
      return
    case 'advance':
      host.advance(op.ms)
      return
    case 'scan':
      host.scan()
      return
  }
}

/** Runs `ops` on a fresh host and throws a descriptive Error at the first broken property. */
function runSequence(kernel: KernelProfileName, ops: Op[], boot: (kernel: KernelProfileName) => EmulatedHostApi = bootHost): void {
  const host = boot(kernel)
  const initial = invariantViolations(host)
  if (initial.length) throw new Error(`after boot: ${initial.join('; ')}`)
  ops.forEach((op, i) => {
    const where = `step ${i} ${show(op)}`
    if (op.op === 'write' && op.prime) {
      for (const q of op.flushes ?? []) {
        try {
          host.submitRequests(q, op.prime)
        } catch (e) {
          if (!(e instanceof SysfsError)) throw new Error(`${where}: submitRequests threw ${String(e)}, not a SysfsError`)
        }
      }
    }
    const before = isMutating(op) ? snapshot(host) : undefined
    let failed: { errno: string } | undefined
    try {
      apply(host, op)
    } catch (e) {
      if (e instanceof SysfsError) failed = e
      // hardware() is the operator's control API, not sysfs: host.ts documents ApmatrixError for a bad
      // action (an adapter that is not in the machine); it must still change nothing.
      else if (op.op === 'hardware' && e instanceof ApmatrixError && (e.code === 'INVALID_ARGUMENT' || e.code === 'NOT_FOUND')) failed = { errno: e.code }
      else throw new Error(`${where} threw ${e instanceof Error ? e.stack : String(e)}, not a SysfsError`)
    }
    checkStep(host, op, where, before, failed)
  })
}

function bootHost(kernel: KernelProfileName): EmulatedHostApi {
  return createHost({ profile: 'spec-fixture', kernel })
}

const KERNELS: KernelProfileName[] = ['current-6.x', 'legacy-5.x', '6.19-override']

t.test('random operation sequences keep the kernel invariants (current-6.x)', async (t) => {
  fc.assert(
    fc.property(fc.constantFrom(true, true, true, false), fc.array(opArb, { maxLength: 30, size: 'max' }), (prelude, ops) => {
      runSequence('current-6.x', prelude ? [...PRELUDE, ...ops] : ops)
    }),
    { numRuns: 200 },
  )
  t.pass('200 sequences')
})

t.test('random operation sequences keep the kernel invariants (every kernel profile)', async (t) => {
  fc.assert(
    fc.property(fc.constantFrom(...KERNELS), fc.array(opArb, { maxLength: 30, size: 'max' }), (kernel, ops) => {
      runSequence(kernel, [...PRELUDE, ...ops])
    }),
    { numRuns: 120 },
  )
  t.pass('120 sequences')
})

// Guards against checks that cannot fail: hosts that really break a rule (faults wrapped around the real
// emulator) must be reported.
t.test('the checks notice broken hosts', async (t) => {
  const host = bootHost('current-6.x')
  t.same(invariantViolations(host), [])
  const wrap = (h: EmulatedHostApi, over: Partial<EmulatedHostApi>): EmulatedHostApi => Object.assign(Object.create(h) as EmulatedHostApi, over)

  const zeroMask = wrap(host, { read: (p: string) => (p === `${BUS}/apmask` ? `0x${'0'.repeat(64)}\n` : host.read(p)) })
  t.match(invariantViolations(zeroMask).join('\n'), /05\.0004 is bound to cex4queue but lies outside apmask x aqmask/)

  const u = UUIDS[0]!
  const twice = wrap(host, {
    list: (p: string) => (p === MATRIX ? [...host.list(p), u, UUIDS[1]!].sort() : host.list(p)),
    read: (p: string) =>
      p.endsWith('/matrix') && p.includes('-') ? '05.0004\n' : p.endsWith('/guest_matrix') || p.endsWith('/control_domains') ? '' : host.read(p),
  })
  t.match(invariantViolations(twice).join('\n'), /APQN 05\.0004 is assigned to both/)

  const guest = wrap(host, {
    list: (p: string) => (p === MATRIX ? [...host.list(p), u].sort() : host.list(p)),
    read: (p: string) =>
      p === `${MATRIX}/${u}/matrix` || p === `${MATRIX}/${u}/guest_matrix` ? '05.0004\n' : p === `${MATRIX}/${u}/control_domains` ? '' : host.read(p),
  })
  t.match(invariantViolations(guest).join('\n'), /guest_matrix has 05\.0004, which is not a queue bound to vfio_ap/)

  const sloppyWrite = (k: KernelProfileName): EmulatedHostApi => {
    const h = bootHost(k)
    return wrap(h, {
      write: (p: string, v: string) => {
        if (v === '0X41\n') {
          h.write(p, '0x\n')
          throw new SysfsError('EINVAL', 'half-applied')
        }
        h.write(p, v)
      },
    })
  }
  t.throws(() => runSequence('current-6.x', [{ op: 'write', path: `${BUS}/apmask`, value: '0X41\n' }], sloppyWrite), /failed with EINVAL but changed apmask/)

  const noFlush = (k: KernelProfileName): EmulatedHostApi => {
    const h = bootHost(k)
    return wrap(h, { read: (p: string) => (p.endsWith('/requestq_count') ? '2\n' : h.read(p)) })
  }
  t.throws(
    () => runSequence('current-6.x', [{ op: 'write', path: `${DEVICES}/05.0004/reset`, value: '1\n', flushes: ['05.0004'] }], noFlush),
    /B-16 flush left 05\.0004/,
  )

  const badBindings = wrap(host, { read: (p: string) => (p === `${BUS}/bindings` ? '11/12 (complete)\n' : host.read(p)) })
  t.match(invariantViolations(badBindings).join('\n'), /bindings reads "11\/12 \(complete\)\\n" with 12 of 12/)

  const crashing = (k: KernelProfileName): EmulatedHostApi =>
    wrap(bootHost(k), {
      scan: () => {
        throw new TypeError('boom')
      },
    })
  t.throws(() => runSequence('current-6.x', [{ op: 'scan' }], crashing), /threw TypeError: boom/)
})
