/** The emulator's write-fault rules (src/emulator/faults.ts): validation, matching, seeded draws, counts. */
import t, { type Test } from 'tap'
import { ApmatrixError, SysfsError } from '../../src/domain/errors.js'
import { FaultInjector, validateFaultConfig, writeWithFaults } from '../../src/emulator/faults.js'

const MATRIX = '/sys/devices/vfio_ap/matrix'
const M = `${MATRIX}/11111111-2222-4333-8444-555555555555`

function invalid(t: Test, input: unknown, field: RegExp): void {
  try {
    validateFaultConfig(input)
    t.fail(`accepted ${JSON.stringify(input)}`)
  } catch (e) {
    t.ok(e instanceof ApmatrixError && e.code === 'INVALID_ARGUMENT', `INVALID_ARGUMENT for ${JSON.stringify(input)}`)
    t.match((e as Error).message, field)
  }
}

t.test('bad configurations are refused with INVALID_ARGUMENT naming the field', async (t) => {
  invalid(t, null, /faults: expected an object/)
  invalid(t, { rules: 'x' }, /rules: expected a list/)
  invalid(t, { rules: [], extra: 1 }, /unknown field 'extra'/)
  invalid(t, { rules: Array.from({ length: 33 }, () => ({ path: '/sys/bus', rate: 1, kind: 'eio' })) }, /rules: at most 32/)
  invalid(t, { rules: [{ path: '', rate: 1, kind: 'eio' }] }, /rules\[0\]\.path/)
  invalid(t, { rules: [{ path: 'bus/ap/apmask', rate: 1, kind: 'eio' }] }, /must start with \/sys\//)
  invalid(t, { rules: [{ path: '/sys/[abc', rate: 1, kind: 'eio' }] }, /not a valid glob/)
  invalid(t, { rules: [{ path: '/sys/bus', rate: 1.5, kind: 'eio' }] }, /rate: expected a number 0..1/)
  invalid(t, { rules: [{ path: '/sys/bus', rate: -0.1, kind: 'eio' }] }, /rate/)
  invalid(t, { rules: [{ path: '/sys/bus', rate: Number.NaN, kind: 'eio' }] }, /rate/)
  invalid(t, { rules: [{ path: '/sys/bus', rate: 1, kind: 'enoent' }] }, /kind: expected one of eio, ebusy, delay/)
  invalid(t, { rules: [{ path: '/sys/bus', rate: 1, kind: 'delay' }] }, /delayMs: a delay rule needs/)
  invalid(t, { rules: [{ path: '/sys/bus', rate: 1, kind: 'delay', delayMs: 60_001 }] }, /delayMs/)
  invalid(t, { rules: [{ path: '/sys/bus', rate: 1, kind: 'eio', delayMs: 5 }] }, /only a delay rule has one/)
  invalid(t, { rules: [], seed: -1 }, /seed/)
  invalid(t, { rules: [], seed: 2 ** 32 }, /seed/)
  t.same(validateFaultConfig({ rules: [{ path: '/sys/bus', rate: 0.5, kind: 'delay', delayMs: 10 }], seed: 7 }), {
    rules: [{ path: '/sys/bus', rate: 0.5, kind: 'delay', delayMs: 10 }],
    seed: 7,
  })
})

t.test('a bad configuration leaves the one in force', async (t) => {
  const f = new FaultInjector()
  f.set({ rules: [{ path: '/sys/bus/ap/apmask', rate: 1, kind: 'eio' }], seed: 1 })
  t.throws(() => f.set({ rules: [{ path: '/sys/bus', rate: 2, kind: 'eio' }] }))
  t.equal(f.decide('/sys/bus/ap/apmask')?.errno, 'EIO')
})

t.test('a prefix matches the node and what is under it; a glob matches whole paths', async (t) => {
  const f = new FaultInjector()
  f.set({ rules: [{ path: MATRIX, rate: 1, kind: 'ebusy' }], seed: 1 })
  t.equal(f.decide(`${M}/assign_adapter`)?.errno, 'EBUSY')
  t.equal(f.decide(MATRIX)?.errno, 'EBUSY')
  t.equal(f.decide('/sys/devices/vfio_ap/matrixx/x'), undefined, 'a prefix stops at a segment boundary')
  t.equal(f.decide('/sys/bus/ap/apmask'), undefined)
  t.equal(f.decide('/sys//devices/./vfio_ap/matrix/x')?.errno, 'EBUSY', 'empty and . segments do not hide a path')

  f.set({ rules: [{ path: `${MATRIX}/*/assign_{adapter,domain}`, rate: 1, kind: 'eio' }], seed: 1 })
  t.equal(f.decide(`${M}/assign_adapter`)?.errno, 'EIO')
  t.equal(f.decide(`${M}/assign_domain`)?.errno, 'EIO')
  t.equal(f.decide(`${M}/assign_control_domain`), undefined)
  t.equal(f.decide(`${MATRIX}/mdev_supported_types/x/create`), undefined, '* stays within one segment')
  f.set({ rules: [{ path: '/sys/**/create', rate: 1, kind: 'eio' }], seed: 1 })
  t.equal(f.decide(`${MATRIX}/mdev_supported_types/vfio_ap-passthrough/create`)?.errno, 'EIO', '** crosses segments')
})

t.test('the same seed gives the same faults; rate 0 never, rate 1 always; counts add up', async (t) => {
  const cfg = { rules: [{ path: '/sys/bus/ap', rate: 0.3, kind: 'eio' }], seed: 42 }
  const run = () => {
    const f = new FaultInjector()
    f.set(cfg)
    const hits = Array.from({ length: 1000 }, () => (f.decide('/sys/bus/ap/apmask') ? 1 : 0))
    return { hits, status: f.status() }
  }
  const a = run()
  const b = run()
  t.same(a.hits, b.hits, 'same seed, same sequence')
  const n = a.hits.reduce((x: number, y) => x + y, 0)
  t.ok(n > 200 && n < 400, `about 30% hit (${n} of 1000)`)
  t.same(
    { writes: a.status.writes, failed: a.status.failed, delayed: a.status.delayed, injected: a.status.rules[0]!.injected, matched: a.status.rules[0]!.matched },
    {
      writes: 1000,
      failed: n,
      delayed: 0,
      injected: n,
      matched: 1000,
    },
  )
  t.equal(a.status.seed, 42)

  const f = new FaultInjector()
  f.set({ rules: [{ path: '/sys', rate: 0, kind: 'eio' }] })
  t.ok(
    Array.from({ length: 200 }, () => f.decide('/sys/bus/ap/apmask')).every((d) => d === undefined),
    'rate 0: never',
  )
  t.ok(Number.isInteger(f.status().seed), 'a random seed is reported')
  f.set({ rules: [{ path: '/sys', rate: 1, kind: 'ebusy' }] })
  t.ok(
    Array.from({ length: 200 }, () => f.decide('/sys/bus/ap/apmask')).every((d) => d?.errno === 'EBUSY'),
    'rate 1: always',
  )
  f.clear()
  t.equal(f.active, false)
  t.equal(f.decide('/sys/bus/ap/apmask'), undefined)
  t.same(f.status().rules, [])
})

t.test('delays of the rules that hit add up; the first failing rule decides the errno', async (t) => {
  const f = new FaultInjector()
  f.set({
    rules: [
      { path: '/sys', rate: 1, kind: 'delay', delayMs: 5 },
      { path: '/sys/bus', rate: 1, kind: 'delay', delayMs: 7 },
      { path: '/sys/bus/ap', rate: 1, kind: 'ebusy' },
      { path: '/sys/bus/ap/apmask', rate: 1, kind: 'eio' },
    ],
    seed: 3,
  })
  const d = f.decide('/sys/bus/ap/apmask')
  t.equal(d?.delayMs, 12)
  t.equal(d?.errno, 'EBUSY')
  t.match(d?.message, /injected fault \(rule 2\): \/sys\/bus\/ap\/apmask/)
  const s = f.status()
  t.same(
    s.rules.map((r) => [r.matched, r.injected]),
    [
      [1, 1],
      [1, 1],
      [1, 1],
      [1, 0],
    ],
    'a failing rule after the first one that hit does not count as injected',
  )
  t.same({ failed: s.failed, delayed: s.delayed }, { failed: 1, delayed: 1 })
})

t.test('writeWithFaults: a failed write is not made and throws the errno; a delayed one is made after the delay', async (t) => {
  const f = new FaultInjector()
  let made = 0
  f.set({ rules: [{ path: '/sys/bus/ap/apmask', rate: 1, kind: 'eio' }], seed: 1 })
  const err = await writeWithFaults(f, '/sys/bus/ap/apmask', () => void made++).then(
    () => undefined,
    (e: unknown) => e,
  )
  t.ok(err instanceof SysfsError && err.errno === 'EIO', 'SysfsError EIO')
  t.equal(made, 0)
  f.set({ rules: [{ path: '/sys/bus/ap/apmask', rate: 1, kind: 'delay', delayMs: 50 }], seed: 1 })
  const p = writeWithFaults(f, '/sys/bus/ap/apmask', () => void made++)
  t.equal(made, 0, 'not made before the delay')
  await p
  t.equal(made, 1)
})
