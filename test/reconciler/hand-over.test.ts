/**
 * The safe hand-over (docs/api.md (Reconcile) step 4) end to end on the real emulator: planner + executor + bus port.
 * Virtual time: the executor's sleep advances the emulator clock, so the drain is deterministic.
 */
import t from 'tap'
import { createHost } from '../../src/emulator/host.js'
import { emulatorAccess } from '../../src/bus/emulator-access.js'
import { SysfsBus } from '../../src/bus/sysfs-bus.js'
import { Mask } from '../../src/domain/mask.js'
import { planHost, type DesiredHost } from '../../src/domain/plan.js'
import { executePlan } from '../../src/reconciler/executor.js'

const U1 = '11111111-1111-4111-8111-111111111111'

function setup() {
  const host = createHost({ profile: 'spec-fixture' })
  const bus = new SysfsBus(emulatorAccess(host))
  // Work sits on the queues of adapter 5 that are about to leave the host (O-12 request and pending lists).
  for (const apqn of ['05.0004', '05.0047']) host.submitRequests(apqn, 20)
  const desired: DesiredHost = {
    apmask: Mask.full().minus(Mask.of([5])),
    aqmask: Mask.full(),
    mdevs: [{ uuid: U1, adapters: [5], domains: [4, 0x47], controlDomains: [4], state: 'started', deleting: false, force: false }],
  }
  return { host, bus, desired }
}

t.test('with a drain, moving busy queues to a matrix device loses no request', async (t) => {
  const { host, bus, desired } = setup()
  const plan = planHost(desired, await bus.observe())
  t.same(plan.drainedQueues, ['05.0004', '05.0047', '05.00ab', '05.00ff'])
  const res = await executePlan(bus, plan, { drainTimeoutMs: 10_000, drainPollMs: 10, sleep: async (ms) => host.advance(ms) })
  t.equal(res.failed, undefined, 'every step succeeded')
  t.equal(res.lostRequests, 0)
  for (const apqn of ['05.0004', '05.0047']) {
    const s = host.requestStats(apqn)
    t.equal(s.flushed, 0, `${apqn}: nothing flushed`)
    t.equal(s.completed, 20, `${apqn}: all 20 completed`)
  }
  const after = await bus.observe()
  t.same(
    after.mdevs.map((m) => [m.uuid, m.matrix, m.controlDomains]),
    [[U1, ['05.0004', '05.0047'], [4]]],
  )
  t.equal(planHost(desired, after).converged, true, 'a second plan finds nothing to do')
})

t.test('a hard hand-over (no drain) loses the requests that were on the queues, and says how many', async (t) => {
  const { host, bus, desired } = setup()
  const res = await executePlan(bus, planHost(desired, await bus.observe()), { drainTimeoutMs: 0, drainPollMs: 10, hard: true })
  t.ok(res.lostRequests > 0, `lost ${res.lostRequests}`)
  const flushed = host.requestStats('05.0004').flushed + host.requestStats('05.0047').flushed
  t.equal(res.lostRequests, flushed, 'the count the executor reports is what the kernel flushed (B-16)')
})

t.test('a drain that times out forces the change and reports the loss', async (t) => {
  const { host, bus, desired } = setup()
  const res = await executePlan(bus, planHost(desired, await bus.observe()), { drainTimeoutMs: 5, drainPollMs: 5, sleep: async (ms) => host.advance(ms) })
  const drain = res.steps.find((s) => s.op.kind === 'drainQueues')
  t.equal(drain?.drain?.timedOut, true)
  t.ok(res.lostRequests > 0)
  t.equal(res.lostRequests, host.requestStats('05.0004').flushed + host.requestStats('05.0047').flushed)
})

t.test('with a steady workload running, the drain takes each queue offline when idle: no request is lost', async (t) => {
  const { host, bus, desired } = setup()
  host.setWorkload('05.0004', 150) // busy most of the time: serviceMs 5 per request on spec-fixture
  host.setWorkload('05.0047', 150)
  host.advance(100)
  const plan = planHost(desired, await bus.observe())
  const res = await executePlan(bus, plan, { drainTimeoutMs: 10_000, drainPollMs: 1, sleep: async (ms) => host.advance(ms) })
  t.equal(res.failed, undefined)
  t.equal(res.lostRequests, 0)
  const drain = res.steps.find((s) => s.op.kind === 'drainQueues')!.drain!
  t.equal(drain.timedOut, false)
  t.ok(drain.offline.includes('05.0004') && drain.offline.includes('05.0047'), 'taken offline for new work')
  host.advance(200)
  for (const apqn of ['05.0004', '05.0047']) {
    const s = host.requestStats(apqn)
    t.equal(s.flushed, 0, `${apqn}: nothing flushed`)
    t.ok(s.completed > 0, `${apqn}: work completed before the hand-over`)
    t.ok(s.rejected > 0, `${apqn}: later work is refused (B-17), not lost`)
    t.equal(s.submitted, s.completed, `${apqn}: everything accepted completed`)
  }
})

t.test('with a steady workload and no drain, the hand-over loses the requests in flight', async (t) => {
  const { host, bus, desired } = setup()
  host.setWorkload('05.0004', 1000) // always several requests in flight (depth 8, 5 ms each)
  host.setWorkload('05.0047', 1000)
  host.advance(100)
  const res = await executePlan(bus, planHost(desired, await bus.observe()), { drainTimeoutMs: 0, drainPollMs: 1, hard: true })
  t.ok(res.lostRequests > 0, `lost ${res.lostRequests}`)
  t.equal(res.lostRequests, host.requestStats('05.0004').flushed + host.requestStats('05.0047').flushed)
})
