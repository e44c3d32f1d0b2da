import t from 'tap'
import { Mask } from '../../src/domain/mask.js'
import { formatApqn } from '../../src/domain/ids.js'
import type { ObservedHost, ObservedMdev, ObservedQueue } from '../../src/domain/observed.js'
import { planHost, type DesiredHost, type PlannedMdev } from '../../src/domain/plan.js'

const ADAPTERS = [5, 6, 7]
const DOMAINS = [4, 0x47, 0xab, 0xff]

/** An observed host shaped like the docs/kernel-model.md §7 fixture, with the given masks and devices. */
function observed(apmask: Mask, aqmask: Mask, mdevs: ObservedMdev[] = [], unbound: string[] = []): ObservedHost {
  const owner = new Map<string, string>()
  for (const m of mdevs) for (const apqn of m.matrix) owner.set(apqn, m.uuid)
  const queues: ObservedQueue[] = []
  for (const a of ADAPTERS)
    for (const d of DOMAINS) {
      const apqn = formatApqn(a, d)
      const host = apmask.has(a) && aqmask.has(d)
      queues.push({
        apqn,
        apid: a,
        apqi: d,
        driver: unbound.includes(apqn) ? 'none' : host ? 'cex4queue' : 'vfio_ap',
        vfioStatus: host ? null : owner.has(apqn) ? 'assigned' : 'unassigned',
        config: true,
        chkstop: false,
        online: host ? true : null,
        requestqCount: 0,
        pendingqCount: 0,
        requestCount: 0,
        owner: owner.get(apqn) ?? null,
      })
    }
  return {
    features: ['APXA', 'QACT', 'guest_matrix', 'hotplug', 'ap_config'],
    maxAdapterId: 255,
    maxDomainId: 255,
    apmask: apmask.toString(),
    aqmask: aqmask.toString(),
    config: { adapters: ADAPTERS, domains: DOMAINS, controlDomains: DOMAINS },
    adapters: [],
    queues,
    mdevs,
    bindings: { bound: 12, total: 12, complete: true },
    vfioApLoaded: true,
    mdevCapacity: 256,
  }
}

function obsMdev(uuid: string, adapters: number[], domains: number[], controlDomains: number[] = []): ObservedMdev {
  const matrix: string[] = []
  for (const a of adapters) for (const d of domains) matrix.push(formatApqn(a, d))
  return { uuid, adapters, domains, controlDomains, matrix, guestMatrix: matrix }
}

function mdev(uuid: string, adapters: number[], domains: number[], extra: Partial<PlannedMdev> = {}): PlannedMdev {
  return { uuid, adapters, domains, controlDomains: [], state: 'started', deleting: false, force: false, ...extra }
}

const U1 = '11111111-1111-4111-8111-111111111111'
const U2 = '22222222-2222-4222-8222-222222222222'
const FOREIGN = '99999999-9999-4999-8999-999999999999'
const full = Mask.full()
const without = (...ids: number[]) => Mask.full().minus(Mask.of(ids))

t.test('a bus that equals the desired state needs no operation', async (t) => {
  const desired: DesiredHost = { apmask: without(5), aqmask: full, mdevs: [mdev(U1, [5], [4])] }
  const plan = planHost(desired, observed(without(5), full, [obsMdev(U1, [5], [4])]))
  t.same(plan.operations, [])
  t.equal(plan.converged, true)
})

t.test('a new device: drain the host queues, clear mask bits, then create and configure', async (t) => {
  const desired: DesiredHost = { apmask: without(5, 6), aqmask: full, mdevs: [mdev(U1, [5, 6], [4, 0x47])] }
  const plan = planHost(desired, observed(full, full))
  t.same(
    plan.operations.map((o) => o.kind),
    ['drainQueues', 'takeFromHost', 'createMdev', 'configureMdev'],
  )
  t.same(plan.drainedQueues, ['05.0004', '05.0047', '05.00ab', '05.00ff', '06.0004', '06.0047', '06.00ab', '06.00ff'])
  const take = plan.operations[1]!
  t.equal(take.kind === 'takeFromHost' && take.apmask, without(5, 6).toString())
  const cfg = plan.operations[3]!
  t.same(cfg.kind === 'configureMdev' && cfg.to, { adapters: [5, 6], domains: [4, 0x47], controlDomains: [] })
})

t.test('docs/api.md (Reconcile): shrink before the mask gives APQNs back, so the in_use veto (B-24) never fires', async (t) => {
  const desired: DesiredHost = { apmask: without(5), aqmask: full, mdevs: [mdev(U1, [5], [4])] }
  const plan = planHost(desired, observed(without(5, 6), full, [obsMdev(U1, [5, 6], [4])]))
  t.same(
    plan.operations.map((o) => o.kind),
    ['shrinkMdev', 'returnToHost'],
  )
  const ret = plan.operations[1]!
  t.same(ret.kind === 'returnToHost' && ret.apqns, ['06.0004', '06.0047', '06.00ab', '06.00ff'])
  t.equal(ret.kind === 'returnToHost' && ret.apmask, without(5).toString())
})

t.test('V-29: a device a guest holds open is not removed without force; its APQNs stay off the host', async (t) => {
  const desired: DesiredHost = { apmask: full, aqmask: full, mdevs: [mdev(U1, [5], [4], { deleting: true })] }
  const obs = observed(without(5), full, [obsMdev(U1, [5], [4])])
  const waiting = planHost(desired, obs, () => 'guest-a')
  t.same(waiting.operations, [], 'nothing can move while the guest holds it')
  t.equal(waiting.deferred[0]?.reason, 'InUseByGuest')
  t.equal(waiting.deferred[1]?.reason, 'HeldByOtherDevice', 'the mask bit is deferred, not attempted')
  t.equal(waiting.converged, false)

  desired.mdevs[0]!.force = true
  const forced = planHost(desired, obs, () => 'guest-a')
  t.same(
    forced.operations.map((o) => o.kind),
    ['removeMdev', 'returnToHost'],
  )
  t.same(forced.deferred, [])
})

t.test('a device that is not ours is never touched, and what it holds blocks mask bits', async (t) => {
  const desired: DesiredHost = { apmask: full, aqmask: full, mdevs: [] }
  const plan = planHost(desired, observed(without(7), full, [obsMdev(FOREIGN, [7], [0xab])]))
  t.same(plan.operations, [], 'no removeMdev for a foreign device, no mask write that would be vetoed')
  t.same(plan.deferred[0]?.apqns, ['07.00ab'])
})

t.test('APQNs moving between two devices: the loser shrinks before the winner grows', async (t) => {
  const desired: DesiredHost = { apmask: without(5), aqmask: full, mdevs: [mdev(U1, [5], [4]), mdev(U2, [5], [0x47])] }
  const plan = planHost(desired, observed(without(5), full, [obsMdev(U1, [5], [4, 0x47]), obsMdev(U2, [], [])]))
  const kinds = plan.operations.map((o) => `${o.kind}:${'uuid' in o ? o.uuid.slice(0, 1) : ''}`)
  t.same(kinds, ['shrinkMdev:1', 'configureMdev:2'])
})

t.test('a queue a root user unbound is bound back to the driver the masks name (B-32)', async (t) => {
  const desired: DesiredHost = { apmask: without(5), aqmask: full, mdevs: [] }
  const plan = planHost(desired, observed(without(5), full, [], ['05.0004', '06.0004']))
  t.same(plan.operations, [
    { kind: 'bindQueue', apqn: '05.0004', driver: 'vfio_ap' },
    { kind: 'bindQueue', apqn: '06.0004', driver: 'cex4queue' },
  ])
})

t.test('a stopped device is removed from the bus and keeps nothing', async (t) => {
  const desired: DesiredHost = { apmask: without(5), aqmask: full, mdevs: [mdev(U1, [5], [4], { state: 'stopped' })] }
  const plan = planHost(desired, observed(without(5), full, [obsMdev(U1, [5], [4])]))
  t.same(plan.operations, [{ kind: 'removeMdev', uuid: U1, force: false, guest: null }])
})

t.test('T-13 order: a set bit that is only blocked by a bit the plan clears is set after the clear, in the same plan', async (t) => {
  // M1 holds (5,4). Desired: adapter 5 back to the host and domain 4 away from it, so (5,4) stays outside apmask x aqmask.
  const desired: DesiredHost = { apmask: full, aqmask: without(4), mdevs: [mdev(U1, [5], [4])] }
  const plan = planHost(desired, observed(without(5), full, [obsMdev(U1, [5], [4])]))
  t.same(
    plan.operations.map((o) => o.kind),
    ['drainQueues', 'takeFromHost', 'returnToHost'],
  )
  const last = plan.operations[2]!
  t.equal(last.kind === 'returnToHost' && last.apmask, full.toString())
  t.equal(last.kind === 'returnToHost' && last.aqmask, without(4).toString())
  t.same(plan.deferred, [])
})
