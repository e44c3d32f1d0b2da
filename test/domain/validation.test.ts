import t from 'tap'
import fc from 'fast-check'
import type { Violation } from '../../src/domain/errors.js'
import { formatApqn } from '../../src/domain/ids.js'
import { Mask, parseMaskWrite } from '../../src/domain/mask.js'
import { FULL_LIMITS, type MdevDesired, type MdevSpec } from '../../src/domain/mdev.js'
import { ApqnOwnerIndex, claimedApqns, validateDesiredState, validateMaskChange } from '../../src/domain/validation.js'

const M1 = '11111111-1111-4111-8111-111111111111'
const M2 = '22222222-2222-4222-8222-222222222222'
const M3 = '33333333-3333-4333-8333-333333333333'

function mask(write: string, from = Mask.full()): Mask {
  const r = parseMaskWrite(write, from)
  if (!r.ok) throw new Error(`bad mask ${write}`)
  return r.mask
}
function mdev(uuid: string, adapters: number[], domains: number[], controlDomains: number[] = [], state: MdevSpec['state'] = 'started'): MdevDesired {
  return { uuid, spec: { adapters, domains, controlDomains, state } }
}
/** T-15 setup: apmask -5,-6 and aqmask -4,-0x47 (vfio_ap owns adapters 5, 6 on all domains and domains 4, 0x47 on all adapters). */
const apmask = mask('-5,-6')
const aqmask = mask('-4,-0x47')
const base = { limits: FULL_LIMITS, apmask, aqmask }
const brief = (vs: Violation[]): unknown[] => vs.map((v) => [v.rule, v.apqn ?? v.id, v.owner, v.fix])

t.test('claimedApqns and the owner index', async (t) => {
  t.same(claimedApqns(mdev(M1, [6, 5], [4])), [
    { apid: 5, apqi: 4 },
    { apid: 6, apqi: 4 },
  ])
  t.same(claimedApqns(mdev(M1, [5], [])), [], 'V-12')
  t.same(claimedApqns({ adapters: [1], domains: [2] }), [{ apid: 1, apqi: 2 }])
  const index = ApqnOwnerIndex.of([mdev(M1, [5], [4, 0x47]), mdev(M2, [5, 6], [4])])
  t.equal(index.owner(5, 4), M1, 'first claimant keeps it')
  t.equal(index.owner(6, 4), M2)
  t.equal(index.owner(7, 4), undefined)
  t.equal(index.size, 3)
  t.equal(index.claim(M1, 5, 4), undefined, 'claiming again is idempotent')
  t.equal(index.claim(M3, 5, 0x47), M1)
})

t.test('a valid host: shared adapters with distinct domains (T-22), empty dimensions (V-12)', async (t) => {
  const vs = validateDesiredState({
    ...base,
    mdevs: [mdev(M1, [5, 6], [4], [4]), mdev(M2, [5], [0x47], [4]), mdev(M3, [5], [], [], 'stopped')],
  })
  t.same(vs, [], 'control domains are not exclusive (T-27); M3 claims nothing')
})

t.test('APQN_IN_USE: one violation per APQN, owner = the earlier mdev, fix removes the smaller shared dimension', async (t) => {
  const vs = validateDesiredState({ ...base, mdevs: [mdev(M1, [5, 6], [4]), mdev(M2, [5, 6], [4, 0x47])] })
  t.same(brief(vs), [
    ['APQN_IN_USE', '05.0004', M1, `remove domain 4 from ${M2}`],
    ['APQN_IN_USE', '06.0004', M1, `remove domain 4 from ${M2}`],
  ])
  t.match(vs[0], { field: `mdevs[${M2}].spec`, message: /05\.0004.*already assigned/ })

  const byAdapter = validateDesiredState({ ...base, mdevs: [mdev(M1, [5], [4, 0x47]), mdev(M2, [5], [4, 0x47])] })
  t.same(
    byAdapter.map((v) => v.fix),
    [`remove adapter 5 from ${M2}`, `remove adapter 5 from ${M2}`],
    'one shared adapter vs two shared domains: remove the adapter',
  )

  const stopped = validateDesiredState({ ...base, mdevs: [mdev(M1, [5], [4], [], 'stopped'), mdev(M2, [5], [4], [], 'stopped')] })
  t.equal(stopped.length, 1, 'exclusivity holds between stopped definitions too')

  const three = validateDesiredState({ ...base, mdevs: [mdev(M1, [5], [4]), mdev(M2, [5], [4]), mdev(M3, [5], [4])] })
  t.same(
    three.map((v) => [v.field, v.owner]),
    [
      [`mdevs[${M2}].spec`, M1],
      [`mdevs[${M3}].spec`, M1],
    ],
  )
})

t.test('APQN_RESERVED of an id the host does not have: the message and the fix say so (V-13, V-20)', async (t) => {
  // The demo host: adapters 0-2 and 5-7, usage domains 1, 2, 4, 5, 10, 71.
  const limits = { ...FULL_LIMITS, hostConfig: { adapters: [0, 1, 2, 5, 6, 7], domains: [1, 2, 4, 5, 10, 71] } }
  const full = { limits, apmask: Mask.full(), aqmask: Mask.full() }
  const vs = validateDesiredState({ ...full, mdevs: [mdev(M1, [5], [3])] })
  t.equal(vs.length, 1)
  t.match(vs[0], { rule: 'APQN_RESERVED', apqn: '05.0003', owner: 'host', message: /reserved .*; the host does not have domain 3$/ })
  t.equal(
    vs[0]!.fix,
    `remove domain 3 from ${M1}: the host does not have it; or, to assign it anyway, clear bit 3 in aqmask: -3 (the kernel accepts it, V-13, and filters it out of the guest until the host has it, V-20)`,
  )
  const adapter = validateDesiredState({ ...full, mdevs: [mdev(M1, [3], [4])] })
  t.match(adapter[0], { message: /the host does not have adapter 3$/, fix: /^remove adapter 3 from .*clear bit 3 in apmask: -3 / })
  const both = validateDesiredState({ ...full, mdevs: [mdev(M1, [3], [3])] })
  t.match(both[0], { message: /the host does not have adapter 3 nor domain 3$/, fix: /^remove domain 3 / })
  t.same(
    validateDesiredState({ ...full, mdevs: [mdev(M1, [5], [4])] }).map((v) => [v.message.includes('does not have'), v.fix]),
    [[false, 'clear bit 4 in aqmask: -4']],
    'configured ids keep the plain fix',
  )
  t.same(validateDesiredState({ ...full, aqmask: mask('-3'), mdevs: [mdev(M1, [5], [3])] }), [], 'with its bit cleared it is admitted (V-13)')
})

t.test('APQN_RESERVED: owner host, fix clears the cheaper mask bit', async (t) => {
  const full = { limits: FULL_LIMITS, apmask: Mask.full(), aqmask: Mask.full() }
  t.same(
    brief(validateDesiredState({ ...full, mdevs: [mdev(M1, [5], [4])] })),
    [['APQN_RESERVED', '05.0004', 'host', 'clear bit 4 in aqmask: -4']],
    'tie: aqmask',
  )
  t.same(
    validateDesiredState({ ...full, mdevs: [mdev(M1, [5], [4, 0x47, 0xab])] }).map((v) => v.fix),
    ['clear bit 5 in apmask: -5', 'clear bit 5 in apmask: -5', 'clear bit 5 in apmask: -5'],
    'one adapter bit hands fewer APQNs away than three domain bits',
  )
  t.same(
    validateDesiredState({ ...full, mdevs: [mdev(M1, [5, 6], [4])] }).map((v) => v.fix),
    ['clear bit 4 in aqmask: -4', 'clear bit 4 in aqmask: -4'],
  )
  t.same(
    validateDesiredState({ ...full, apmask: mask('-5'), mdevs: [mdev(M1, [5, 6], [4])] }).map((v) => v.apqn),
    ['06.0004'],
    'only APQNs inside apmask x aqmask',
  )
  t.same(validateDesiredState({ ...full, mdevs: [mdev(M1, [5], [])] }), [], 'V-12: T-20 an adapter alone is fine')
  t.same(
    validateDesiredState({ ...base, mdevs: [mdev(M1, [7], [0xab])] }).map((v) => v.rule),
    ['APQN_RESERVED'],
  )
})

t.test('INVALID_ARGUMENT and OUT_OF_RANGE', async (t) => {
  const limits = { maxAdapterId: 63, maxDomainId: 15 }
  const vs = validateDesiredState({
    limits,
    apmask: Mask.empty(),
    aqmask: Mask.empty(),
    mdevs: [mdev(M1, [5], [], [4]), mdev(M2, [64, 5], [16, 4], [0x20]), mdev(M2, [1], [1]), mdev('NOT-A-UUID', [9], [9])],
  })
  t.same(
    vs.map((v) => [v.rule, v.field, v.id]),
    [
      ['INVALID_ARGUMENT', `mdevs[${M1}].spec.controlDomains`, undefined],
      ['OUT_OF_RANGE', `mdevs[${M2}].spec.adapters`, 64],
      ['OUT_OF_RANGE', `mdevs[${M2}].spec.domains`, 16],
      ['OUT_OF_RANGE', `mdevs[${M2}].spec.controlDomains`, 0x20],
      ['INVALID_ARGUMENT', `mdevs[${M2}]`, undefined],
      ['INVALID_ARGUMENT', 'mdevs[NOT-A-UUID]', undefined],
    ],
  )
  t.match(vs[0], { fix: /usage domain/ })
})

t.test('every rule at once: all violations are reported', async (t) => {
  const vs = validateDesiredState({
    limits: { maxAdapterId: 63, maxDomainId: 255 },
    apmask,
    aqmask,
    mdevs: [mdev(M1, [5, 100], [4]), mdev(M2, [5, 7], [4, 0xab], [1]), mdev(M3, [], [], [4])],
  })
  t.same(
    vs.map((v) => [v.rule, v.apqn ?? v.id]),
    [
      ['OUT_OF_RANGE', 100],
      ['INVALID_ARGUMENT', undefined],
      ['APQN_RESERVED', '07.00ab'],
      ['APQN_IN_USE', '05.0004'],
    ],
  )
})

t.test('the violation list is capped with a summary entry', async (t) => {
  const vs = validateDesiredState({ ...base, apmask: Mask.full(), aqmask: Mask.full(), mdevs: [mdev(M1, [1, 2], [1, 2, 3])] }, { maxViolations: 4 })
  t.equal(vs.length, 5)
  t.match(vs[4], { rule: 'APQN_RESERVED', message: /more violations not listed/ })
  const exact = validateDesiredState({ ...base, apmask: Mask.full(), aqmask: Mask.full(), mdevs: [mdev(M1, [1, 2], [1, 2])] }, { maxViolations: 4 })
  t.equal(exact.length, 4, 'no summary when nothing was dropped')
})

t.test('scale: 256 mdevs x 256 domains on a 256 x 256 host', async (t) => {
  const uuid = (i: number): string => `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`
  const all = Array.from({ length: 256 }, (_, i) => i)
  const valid = all.map((i) => mdev(uuid(i), [i], all))
  t.same(validateDesiredState({ limits: FULL_LIMITS, apmask: Mask.empty(), aqmask: Mask.empty(), mdevs: valid }), [])
  t.equal(ApqnOwnerIndex.of(valid).size, 65536)
  const clash = all.map((i) => mdev(uuid(i), [0], all))
  const vs = validateDesiredState({ limits: FULL_LIMITS, apmask: Mask.empty(), aqmask: Mask.empty(), mdevs: clash })
  t.equal(vs.length, 1001, '255 x 256 conflicts, capped at 1000 plus the summary')
  const busy = validateMaskChange({ oldApmask: Mask.empty(), oldAqmask: Mask.empty(), newApmask: Mask.full(), newAqmask: Mask.full(), mdevs: valid })
  t.equal(busy.length, 1001)
})

t.test('validateMaskChange: B-24 in_use veto', async (t) => {
  const held = [mdev(M1, [5], [4])]
  t.same(
    brief(validateMaskChange({ oldApmask: mask('-5'), oldAqmask: Mask.full(), newApmask: Mask.full(), newAqmask: Mask.full(), mdevs: held })),
    [['BUSY', '05.0004', M1, `unassign adapter 5 from ${M1} first`]],
    'T-12',
  )
  t.match(validateMaskChange({ oldApmask: mask('-5'), oldAqmask: Mask.full(), newApmask: Mask.full(), newAqmask: Mask.full(), mdevs: held })[0], {
    field: 'apmask',
    id: 5,
    message: /05\.0004/,
  })
  const t13 = { oldApmask: mask('-5'), oldAqmask: mask('-4'), mdevs: held }
  t.same(validateMaskChange({ ...t13, newApmask: Mask.full(), newAqmask: mask('-4') }), [], 'T-13 +5 is fine while aqmask bit 4 is clear')
  t.same(
    brief(validateMaskChange({ oldApmask: Mask.full(), oldAqmask: mask('-4'), newApmask: Mask.full(), newAqmask: Mask.full(), mdevs: held })),
    [['BUSY', '05.0004', M1, `unassign domain 4 from ${M1} first`]],
    'T-13 then +4 in aqmask is BUSY',
  )
  t.same(
    validateMaskChange({ oldApmask: Mask.full(), oldAqmask: Mask.full(), newApmask: mask('-5,-6'), newAqmask: Mask.empty(), mdevs: held }),
    [],
    'clearing bits is never vetoed',
  )
  t.same(
    validateMaskChange({ oldApmask: mask('-5'), oldAqmask: Mask.full(), newApmask: Mask.full(), newAqmask: Mask.full(), mdevs: [mdev(M1, [5], [])] }),
    [],
    'T-14 needs an assigned APQN: an adapter without domains holds none (V-12)',
  )
  t.same(
    validateMaskChange({
      oldApmask: mask('-5'),
      oldAqmask: mask('-4'),
      newApmask: mask('-6'),
      newAqmask: mask('-7'),
      mdevs: [mdev(M1, [5], [7]), mdev(M2, [6], [4])],
    }),
    [],
    'end-state check: +5,-6 with +4,-7 hands back nothing held',
  )
})

// Brute-force references over a small id pool.
const POOL = 12
const ids = fc.uniqueArray(fc.integer({ min: 0, max: POOL - 1 }), { maxLength: 5 })
const uuidOf = (i: number): string => `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`
const mdevsArb = fc.array(fc.tuple(ids, ids), { maxLength: 6 }).map((xs) =>
  xs.map(([a, d], i) =>
    mdev(
      uuidOf(i),
      a.sort((x, y) => x - y),
      d.sort((x, y) => x - y),
    ),
  ),
)
const maskArb = fc.uniqueArray(fc.integer({ min: 0, max: POOL - 1 })).map((xs) => Mask.of(xs))

t.test('property: validation finds exactly the overlaps and reservations a brute-force reference finds', async () => {
  fc.assert(
    fc.property(mdevsArb, maskArb, maskArb, (mdevs, ap, aq) => {
      const expected: string[] = []
      for (let j = 0; j < mdevs.length; j++) {
        for (let a = 0; a < POOL; a++) {
          for (let d = 0; d < POOL; d++) {
            const has = (m: MdevDesired): boolean => m.spec.adapters.includes(a) && m.spec.domains.includes(d)
            if (!has(mdevs[j]!)) continue
            if (ap.has(a) && aq.has(d)) expected.push(`R ${mdevs[j]!.uuid} ${formatApqn(a, d)} host`)
            const first = mdevs.slice(0, j).find(has)
            if (first) expected.push(`U ${mdevs[j]!.uuid} ${formatApqn(a, d)} ${first.uuid}`)
          }
        }
      }
      const got = validateDesiredState({ limits: FULL_LIMITS, apmask: ap, aqmask: aq, mdevs }).map(
        (v) => `${v.rule === 'APQN_RESERVED' ? 'R' : v.rule === 'APQN_IN_USE' ? 'U' : v.rule} ${/\[(.*)\]/.exec(v.field!)![1]} ${v.apqn} ${v.owner}`,
      )
      return JSON.stringify(got.sort()) === JSON.stringify(expected.sort())
    }),
    { numRuns: 300 },
  )
})

t.test('property: validateMaskChange reports exactly the held APQNs a kernel write sequence (clears, then sets) would veto', async () => {
  fc.assert(
    fc.property(mdevsArb, maskArb, maskArb, maskArb, maskArb, (mdevs, oldAp, oldAq, newAp, newAq) => {
      const held = new Map<string, string>()
      for (const m of mdevs) for (const { apid, apqi } of claimedApqns(m)) held.set(`${formatApqn(apid, apqi)} ${m.uuid}`, m.uuid)
      // Reference: B-24 applied to the writes apmask-clears, aqmask-clears, apmask-sets, aqmask-sets.
      const ap1 = oldAp.and(newAp)
      const aq1 = oldAq.and(newAq)
      const vetoed = new Set<string>()
      for (const key of held.keys()) {
        const [apqn] = key.split(' ')
        const a = parseInt(apqn!.slice(0, 2), 16)
        const d = parseInt(apqn!.slice(3), 16)
        const bySetAp = newAp.has(a) && !ap1.has(a) && aq1.has(d)
        const bySetAq = newAq.has(d) && !aq1.has(d) && newAp.has(a)
        if (bySetAp || bySetAq) vetoed.add(key)
      }
      const got = validateMaskChange({ oldApmask: oldAp, oldAqmask: oldAq, newApmask: newAp, newAqmask: newAq, mdevs }).map((v) => `${v.apqn} ${v.owner}`)
      return JSON.stringify(got.sort()) === JSON.stringify([...vetoed].sort())
    }),
    { numRuns: 300 },
  )
})
