/**
 * Convergence scenarios through the REST API (docs/api.md (Reconcile)-§5): the service as `apmatrix serve` wires
 * it, over a real socket, with the real reconciler, and host `local` behind one backend. The same
 * scenarios with the same expectations run on every backend (convergence-*.test.ts). Every wait is
 * bounded and polls GET until the status says the bus matches.
 */
import type { Test } from 'tap'
import type { TestDatabase } from '../store/pg-helper.js'
import { condition, crossProduct, isReady, until } from './rest-client.js'
import { HOST, MATRIX, seenGuest, startScenario, type Scenario, type ScenarioBackend } from './scenario-fixture.js'

const A = 'aaaaaaaa-0000-4000-8000-000000000001'
const B = 'bbbbbbbb-0000-4000-8000-000000000002'
const C = 'cccccccc-0000-4000-8000-000000000003'
/** apmask with bits 5 and 6 cleared (adapters 5 and 6 leave the host drivers, B-21). */
const AP_NO_5_6 = `0xf9${'f'.repeat(62)}`

/** Frees adapters 5 and 6 from the host drivers and waits until the bus shows it. */
async function freeAdapters56(s: Scenario): Promise<void> {
  const r = await s.call('PUT', `${HOST}/masks`, { body: { apmask: '-5,-6' } })
  if (r.status !== 200) throw new Error(`PUT masks: ${r.status} ${r.text}`)
  await until('apmask on the bus to drop adapters 5 and 6', async () => (await s.sysfs('/sys/bus/ap/apmask')) === `${AP_NO_5_6}\n`)
}

async function create(s: Scenario, uuid: string, spec: object): Promise<void> {
  const r = await s.call('POST', `${HOST}/mdevs`, { body: { uuid, spec } })
  if (r.status !== 201) throw new Error(`POST mdev ${uuid}: ${r.status} ${r.text}`)
}

/** One share of the scenarios: those whose position modulo `of` is `index` (a backend split over files). */
export interface ScenarioShare {
  index: number
  of: number
}

/**
 * Registers every scenario (or the `share` of them) as a subtest of `t`, each on a fresh database of
 * `db`'s provider. The slow backends split the scenarios over two files, so the halves run side by side.
 */
export function scenarios(tap: Test, db: TestDatabase, backend: ScenarioBackend, share: ScenarioShare = { index: 0, of: 1 }): void {
  let position = 0
  const t = {
    test: (name: string, fn: (t: Test) => Promise<void>) => {
      if (position++ % share.of === share.index) tap.test(name, fn)
    },
  }
  t.test('create, hot plug a domain into a running guest (PATCH), delete: each converges (V-19, V-26)', async (t) => {
    const s = await startScenario(t, db, {}, backend)
    await freeAdapters56(s)
    const post = await s.call('POST', `${HOST}/mdevs`, { body: { uuid: A, spec: { adapters: [5], domains: [4], controlDomains: [4] } } })
    t.equal(post.status, 201, post.text)
    t.equal(post.body.metadata.generation, 1)
    const ready = await s.waitReady(A)
    t.same(ready.status.matrix, ['05.0004'])
    t.same(ready.status.guestMatrix, ['05.0004'])
    t.equal(condition(ready, 'Progressing')?.status, 'False')
    t.equal(await s.sysfs(`${MATRIX}/${A}/matrix`), '05.0004\n', 'the bus has the matrix')
    t.equal(await s.sysfs(`${MATRIX}/${A}/control_domains`), '0004\n')

    await s.host.guestOpen(A, 'vm1')
    const vm1 = seenGuest(backend, 'vm1')
    await s.waitMdev(A, `status.guest = ${vm1}`, (m) => m.status.guest === vm1 && condition(m, 'InUseByGuest')?.status === 'True')

    const patch = await s.call('PATCH', `${HOST}/mdevs/${A}`, {
      raw: JSON.stringify({ spec: { domains: [4, '0x47'] } }),
      headers: { 'content-type': 'application/merge-patch+json' },
    })
    t.equal(patch.status, 200, patch.text)
    t.equal(patch.body.metadata.generation, 2, 'a spec change bumps the generation')
    const grown = await s.waitReady(A)
    t.equal(grown.status.observedGeneration, 2)
    t.same(grown.status.matrix, ['05.0004', '05.0047'])
    t.same(grown.status.guestMatrix, ['05.0004', '05.0047'], 'V-26: the running guest got the new domain (hot plug)')
    t.equal(grown.status.guest, vm1, 'the guest kept the device open through the update')
    t.equal(await s.sysfs(`${MATRIX}/${A}/guest_matrix`), '05.0004\n05.0047\n')

    await s.host.guestClose('vm1')
    const del = await s.call('DELETE', `${HOST}/mdevs/${A}`)
    t.equal(del.status, 202, del.text)
    t.ok(del.body.metadata.deletionRequestedAt, 'the answer carries the deletion marker')
    await s.waitGone(A)
    t.equal(await s.sysfs(`${MATRIX}/${A}`), null, 'the device is off the bus')
    for (const ty of ['MdevDefined', 'MdevStarted', 'MdevUpdated', 'MdevReconfigured', 'MdevUndefined', 'MdevStopped'])
      t.ok(await s.waitEvent(ty, (e) => e.name === A), `event ${ty}`)
  })

  t.test('rule 2 (V-10 EADDRINUSE): a device claiming APQNs of another is refused with every conflict and its owner', async (t) => {
    const s = await startScenario(t, db, {}, backend)
    await freeAdapters56(s)
    await create(s, A, { adapters: [5, 6], domains: [4, 0x47], controlDomains: [4] })
    await s.waitReady(A)
    const r = await s.call('POST', `${HOST}/mdevs`, { body: { uuid: B, spec: { adapters: [5, 6], domains: [0x47, 0xab] } } })
    t.equal(r.status, 409, r.text)
    t.equal(r.body.code, 'APQN_IN_USE')
    t.match(r.headers.get('content-type'), /application\/problem\+json/)
    const conflicts = (r.body.violations as Array<{ rule: string; apqn: string; owner: string; fix?: string }>)
      .filter((v) => v.rule === 'APQN_IN_USE')
      .map((v) => [v.apqn, v.owner])
      .sort()
    t.same(
      conflicts,
      [
        ['05.0047', A],
        ['06.0047', A],
      ],
      'both shared APQNs, each with the device that holds it',
    )
    t.ok(
      r.body.violations.every((v: { fix?: string }) => typeof v.fix === 'string' && v.fix.length > 0),
      'each violation suggests a fix',
    )
    t.equal(await s.mdev(B), null, 'nothing was stored')
    t.equal(await s.sysfs(`${MATRIX}/${B}`), null, 'nothing reached the bus')
    // The non-overlapping part is fine: a shared adapter with other domains (T-22).
    await create(s, B, { adapters: [5, 6], domains: [0xab] })
    const b = await s.waitReady(B)
    t.same(b.status.matrix, ['05.00ab', '06.00ab'])
    t.same((await s.mdev(A)).status.matrix, crossProduct([5, 6], [4, 0x47]), 'A is untouched')
    // Growing A into B's APQNs is refused the same way, and A keeps its generation.
    const grow = await s.call('PATCH', `${HOST}/mdevs/${A}`, {
      raw: JSON.stringify({ spec: { domains: [4, 0x47, 0xab] } }),
      headers: { 'content-type': 'application/merge-patch+json' },
    })
    t.equal(grow.status, 409, grow.text)
    t.equal(grow.body.code, 'APQN_IN_USE')
    t.same(
      grow.body.violations
        .filter((v: { rule: string }) => v.rule === 'APQN_IN_USE')
        .map((v: { apqn: string; owner: string }) => [v.apqn, v.owner])
        .sort(),
      [
        ['05.00ab', B],
        ['06.00ab', B],
      ],
    )
    t.equal((await s.mdev(A)).metadata.generation, 1, 'nothing stored')
  })

  t.test('rule 4 (B-24 in_use veto): a mask change that hands a held APQN back to the host is BUSY', async (t) => {
    const s = await startScenario(t, db, {}, backend)
    await freeAdapters56(s)
    await create(s, A, { adapters: [5], domains: [4, 0x47] })
    await s.waitReady(A)
    const before = (await s.call('GET', `${HOST}/masks`)).body
    const r = await s.call('PUT', `${HOST}/masks`, { body: { apmask: '+5' } })
    t.equal(r.status, 409, r.text)
    t.equal(r.body.code, 'BUSY')
    const busy = (r.body.violations as Array<{ rule: string; apqn: string; owner: string }>).filter((v) => v.rule === 'BUSY')
    t.same(busy.map((v) => v.apqn).sort(), ['05.0004', '05.0047'], 'every held APQN the change would hand back')
    t.ok(
      busy.every((v) => v.owner === A),
      'owned by A',
    )
    const after = (await s.call('GET', `${HOST}/masks`)).body
    t.same(after.spec, before.spec, 'the desired masks are unchanged')
    t.equal(after.metadata.generation, before.metadata.generation)
    t.equal(await s.sysfs('/sys/bus/ap/apmask'), `${AP_NO_5_6}\n`, 'the bus masks are unchanged')
    // Adapter 6 holds nothing: giving it back is allowed and converges.
    const ok = await s.call('PUT', `${HOST}/masks`, { body: { apmask: '+6' } })
    t.equal(ok.status, 200, ok.text)
    await until('adapter 6 back on the host', async () => (await s.sysfs('/sys/bus/ap/apmask')) === `0xfb${'f'.repeat(62)}\n`)
  })

  t.test('V-20/V-33: a manual unbind while adapter 6 is checkstopped leaves it filtered (AdapterFiltered); the drift is repaired', async (t) => {
    const s = await startScenario(t, db, {}, backend)
    await freeAdapters56(s)
    await create(s, A, { adapters: [5, 6], domains: [4, 0x47], controlDomains: [4] })
    const ready = await s.waitReady(A)
    t.same(ready.status.guestMatrix, crossProduct([5, 6], [4, 0x47]))
    t.equal(condition(ready, 'AdapterFiltered')?.status, 'False')

    await s.host.hardware({ action: 'checkstop', apid: 6 })
    // Root unbinds one queue: V-33 drops adapter 6 from the guest view and resets its queues, which fails on a
    // checkstopped card (V-39), so re-binding the queue cannot bring the adapter back (V-20).
    await s.host.write('/sys/bus/ap/drivers/vfio_ap/unbind', '06.0047\n')
    const filtered = await s.waitMdev(A, 'AdapterFiltered=True', (m) => condition(m, 'AdapterFiltered')?.status === 'True')
    t.match(condition(filtered, 'AdapterFiltered')?.message, /adapters 06/)
    t.equal(condition(filtered, 'Degraded')?.reason, 'AdapterFiltered')
    t.same(filtered.status.guestMatrix, ['05.0004', '05.0047'], 'the guest gets adapter 5 only')
    t.same(filtered.status.matrix, crossProduct([5, 6], [4, 0x47]), 'the assigned matrix is whole')
    const q = await until('06.0047 bound to vfio_ap again', async () => {
      const r = await s.call('GET', `${HOST}/queues?adapter=6`)
      return r.body.items?.find((x: { apqn: string; driver: string }) => x.apqn === '06.0047' && x.driver === 'vfio_ap')
    })
    t.equal(q.owner, A, 'the queue is linked to A again')
    t.ok(await s.waitEvent('QueueBound', (e) => e.name === '06.0047'), 'QueueBound 06.0047')
    const drift = await s.waitEvent('DriftDetected', (e) => /bindQueue/.test(e.message))
    t.match(drift.message, /bindQueue/, 'DriftDetected names the repair')
    t.ok(await s.waitEvent('AdapterFiltered', (e) => e.name === A), 'AdapterFiltered event for A')

    // The card recovers; root re-probes both queues of adapter 6 (filtering runs only on a probe, V-21); the
    // reconciler binds them back and the adapter returns to the guest.
    await s.host.hardware({ action: 'checkstop-clear', apid: 6 })
    for (const apqn of ['06.0004', '06.0047']) {
      await until(`${apqn} bound to vfio_ap`, async () =>
        (await s.call('GET', `${HOST}/queues?adapter=6`)).body.items?.some((x: { apqn: string; driver: string }) => x.apqn === apqn && x.driver === 'vfio_ap'),
      )
      await s.host.write('/sys/bus/ap/drivers/vfio_ap/unbind', `${apqn}\n`)
    }
    const healed = await s.waitMdev(
      A,
      'AdapterFiltered=False and the whole matrix in the guest',
      (m) => condition(m, 'AdapterFiltered')?.status === 'False' && m.status.guestMatrix.length === 4,
    )
    t.same(healed.status.guestMatrix, crossProduct([5, 6], [4, 0x47]))
    t.equal(condition(healed, 'Degraded')?.status, 'False')
    t.ok(isReady(healed))
    t.ok(await s.waitEvent('DriftDetected', (e) => e.seq > drift.seq), 'the later unbinds were detected as drift too')
  })

  t.test('V-29: DELETE of a device a guest holds waits (InUseByGuest) until the guest closes it; force does not wait', async (t) => {
    const s = await startScenario(t, db, {}, backend)
    await freeAdapters56(s)
    await create(s, A, { adapters: [5], domains: [4] })
    await create(s, B, { adapters: [6], domains: [4] })
    await s.waitReady(A)
    await s.waitReady(B)
    for (const [uuid, guest] of [
      [A, 'vm1'],
      [B, 'vm2'],
    ]) {
      await s.host.guestOpen(uuid!, guest!)
    }

    t.equal((await s.call('DELETE', `${HOST}/mdevs/${A}`)).status, 202)
    const waiting = await s.waitMdev(A, 'Ready=False WaitingForGuest', (m) => condition(m, 'Ready')?.reason === 'WaitingForGuest')
    t.equal(condition(waiting, 'InUseByGuest')?.status, 'True')
    t.equal(waiting.status.guest, seenGuest(backend, 'vm1'))
    t.equal(await s.sysfs(`${MATRIX}/${A}/matrix`), '05.0004\n', 'still on the bus while the guest has it')
    await s.host.guestClose('vm1')
    await s.waitGone(A)
    t.equal(await s.sysfs(`${MATRIX}/${A}`), null)

    const force = await s.call('DELETE', `${HOST}/mdevs/${B}?force=true`)
    t.equal(force.status, 202, force.text)
    t.equal(force.body.metadata.force, true)
    await s.waitGone(B)
    t.equal(await s.sysfs(`${MATRIX}/${B}`), null, 'removed although vm2 had it open')
    t.same(await s.host.guests(), [], 'the guest lost the device')
    t.ok(await s.waitEvent('MdevStopped', (e) => e.name === B && /forced/.test(e.message)), 'the forced removal says so')
  })

  t.test('host reboot: kernel state is lost, started devices and masks come back, stopped ones stay off', async (t) => {
    const s = await startScenario(t, db, {}, backend)
    await freeAdapters56(s)
    await create(s, A, { adapters: [5, 6], domains: [4, 0x47], controlDomains: [4] })
    await create(s, B, { adapters: [5], domains: [0xab], state: 'stopped' })
    await s.waitReady(A)
    const b = await s.waitReady(B)
    t.equal(b.status.active, false, 'a stopped device is defined only')
    const bootBefore = (await s.call('GET', `${HOST}`)).body.bootId

    const bootAfter = await s.host.reboot()
    t.not(bootAfter, bootBefore, 'a new boot')
    // Wait on the bus, not on the status: the status still says Ready from before the reboot until a pass runs.
    const want = '05.0004\n05.0047\n06.0004\n06.0047\n'
    await until(
      'A back on the bus with its whole matrix',
      async () => (await s.sysfs(`${MATRIX}/${A}/guest_matrix`)) === want && (await s.sysfs(`${MATRIX}/${A}/control_domains`)) === '0004\n',
    )
    t.equal(await s.sysfs(`${MATRIX}/${A}/matrix`), want)
    t.equal(await s.sysfs('/sys/bus/ap/apmask'), `${AP_NO_5_6}\n`, 'the desired masks are restored')
    t.equal(await s.sysfs(`${MATRIX}/${B}`), null, 'the stopped device is not created')
    const booted = await until(
      'a HostBooted event',
      async () => {
        const e = await s.events('HostBooted')
        return e.length ? e : undefined
      },
      { describe: async () => (await s.events()).map((e) => e.type) },
    )
    t.match(booted[0]!.message, bootAfter, 'it names the new boot')
    const a = await s.waitMdev(A, 'Ready with the whole guest matrix', (m) => isReady(m) && m.status.guestMatrix.length === 4)
    t.equal(a.status.active, true)
    t.ok(isReady(await s.mdev(B)))
  })

  t.test('PUT desired: a whole-host document converges; a second one of the same owner updates one device and deletes the one it omits', async (t) => {
    const s = await startScenario(t, db, {}, backend)
    const doc = (mdevs: Array<{ uuid: string; spec: object }>) => ({
      masks: { apmask: '-5,-6' },
      owner: 'ctl',
      mdevs: mdevs.map((m) => ({ ...m, owner: 'ctl' })),
    })
    const first = await s.call('PUT', `${HOST}/desired`, {
      body: doc([
        { uuid: A, spec: { adapters: [5], domains: [4, 0x47] } },
        { uuid: B, spec: { adapters: [6], domains: [4], controlDomains: [0xab] } },
      ]),
    })
    t.equal(first.status, 200, first.text)
    t.same(first.body.mdevs.map((m: { uuid: string; action: string }) => [m.uuid, m.action]).sort(), [
      [A, 'created'],
      [B, 'created'],
    ])
    t.same((await s.waitReady(A)).status.matrix, ['05.0004', '05.0047'])
    t.same((await s.waitReady(B)).status.controlDomains, [0xab])
    // A device of another owner is not the document's business.
    await create(s, C, { adapters: [6], domains: [0x47] })
    await s.waitReady(C)

    const second = await s.call('PUT', `${HOST}/desired`, { body: doc([{ uuid: A, spec: { adapters: [5, 6], domains: [0xab] } }]) })
    t.equal(second.status, 200, second.text)
    t.same(second.body.mdevs.map((m: { uuid: string; action: string }) => [m.uuid, m.action]).sort(), [
      [A, 'updated'],
      [B, 'deleted'],
    ])
    await s.waitGone(B)
    t.equal(await s.sysfs(`${MATRIX}/${B}`), null, 'the omitted device left the bus')
    const a = await s.waitReady(A)
    t.equal(a.metadata.generation, 2)
    t.same(a.status.matrix, ['05.00ab', '06.00ab'], 'the old APQNs are unassigned, the new ones assigned')
    t.equal(await s.sysfs(`${MATRIX}/${A}/matrix`), '05.00ab\n06.00ab\n')
    t.ok(isReady(await s.mdev(C)), "the other owner's device stays")
    t.equal(await s.sysfs(`${MATRIX}/${C}/matrix`), '06.0047\n')
  })

  t.test('safe hand-over: busy queues move to a device through PUT desired with 0 lost; a root apmask write flushes some', async (t) => {
    const s = await startScenario(t, db, { APMATRIX_DRAIN_TIMEOUT_MS: '60000' }, backend)
    // O-12: work sits on the host queues of adapter 5 (8 in flight per queue, 5 ms each: almost 4 s of work).
    for (const apqn of ['05.0004', '05.0047']) {
      t.equal(await s.host.submitRequests(apqn, 6000), 6000)
    }
    const queues = (await s.call('GET', `${HOST}/queues?adapter=5`)).body.items as Array<{
      apqn: string
      driver: string
      requestqCount: number
      pendingqCount: number
    }>
    const busy = queues.filter((x) => ['05.0004', '05.0047'].includes(x.apqn))
    t.equal(busy.length, 2, 'both queues are in the inventory')
    for (const q of busy) {
      t.ok(
        q.driver === 'cex4queue' && q.requestqCount + q.pendingqCount > 0,
        `${q.apqn} has work on it when the hand-over is asked for (${q.pendingqCount} pending, ${q.requestqCount} waiting)`,
      )
    }
    const put = await s.call('PUT', `${HOST}/desired`, {
      body: { masks: { apmask: '-5' }, mdevs: [{ uuid: C, spec: { adapters: [5], domains: [4, 0x47], controlDomains: [4] } }] },
    })
    t.equal(put.status, 200, put.text)
    t.same(
      put.body.plan.summary.drainedQueues,
      { count: 4, ranges: ['05.0004', '05.0047', '05.00ab', '05.00ff'], moreRanges: 0 },
      'the plan (its summary) drains the queues that leave the host',
    )
    t.same(
      put.body.mdevs.map((m: { uuid: string; action: string }) => [m.uuid, m.action]),
      [[C, 'created']],
    )
    const c = await s.waitReady(C)
    t.same(c.status.matrix, ['05.0004', '05.0047'])
    t.equal(c.status.lostRequests, 0, 'status: no request lost')
    // The pass that took the queues records its events together: once its MasksApplied is stored, so would a QueueFlushed be.
    await s.waitEvent('MasksApplied', (e) => /took 4 queues/.test(e.message))
    t.same(await s.events('QueueFlushed'), [], 'no QueueFlushed event')
    for (const apqn of ['05.0004', '05.0047']) {
      const st = await s.host.requestStats(apqn)
      t.same(st, { submitted: 6000, completed: 6000, flushed: 0, rejected: 0 }, `${apqn}: every request completed before the hand-over`)
    }

    // A hard change: root clears adapter 7 from apmask while its queue is busy. B-25 reprobes the queue, B-14 flushes.
    t.equal(await s.host.submitRequests('07.0004', 20_000), 20_000)
    const before = await s.svc.store.events.lastSeq()
    await s.host.write('/sys/bus/ap/apmask', '-7\n')
    const st = await s.host.requestStats('07.0004')
    t.ok(st.flushed > 0, `the manual write lost ${st.flushed} requests (B-16)`)
    // Drift: the desired state keeps adapter 7 on the host, so the reconciler gives it back.
    await until('apmask repaired to the desired -5', async () => (await s.sysfs('/sys/bus/ap/apmask')) === `0xfb${'f'.repeat(62)}\n`)
    await s.waitEvent('DriftDetected', (e) => e.seq > before)
    t.equal((await s.mdev(C)).status.lostRequests, 0, 'the device did not lose anything: the flushed queue was never its')
  })
}
