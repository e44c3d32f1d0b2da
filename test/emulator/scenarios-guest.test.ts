/**
 * docs/kernel-model.md §7 scenarios for guests, bind/unbind, mdev removal and ap_config: T-33..T-47 and T-58..T-60.
 * Setup unless stated: the §6 host with the T-15 masks (apmask -5,-6; aqmask -4,-0x47), see `vfioMasks`.
 */
import t from 'tap'
import { AsyncHost } from '../../src/emulator/async-host.js'
import type { EmulatedHostApi } from '../../src/emulator/api.js'
import {
  ALL_ZEROS,
  DRIVERS,
  M1,
  M2,
  ResetProbe,
  TYPE_DIR,
  assign,
  bare,
  busSnapshot,
  createMdev,
  driverOf,
  errnoOf,
  errnoOfAsync,
  lastApcb,
  lastSeq,
  loadProfile,
  logs,
  maskHex,
  matrixText,
  mdevPath,
  mdevSnapshot,
  newHost,
  queuesOf,
  settle,
  statusOf,
  tryEcho,
  vfioMasks,
} from './helpers.js'

const VFIO_BIND = `${DRIVERS}/vfio_ap/bind`
const VFIO_UNBIND = `${DRIVERS}/vfio_ap/unbind`
const ZQ_BIND = `${DRIVERS}/cex4queue/bind`
const ZQ_UNBIND = `${DRIVERS}/cex4queue/unbind`

/** T-33 given: M1 attached to guest1 with (5,4) and (5,0x47) in the guest. */
function attachedM1(host: EmulatedHostApi): void {
  vfioMasks(host)
  createMdev(host, M1)
  assign(host, M1, { adapters: [5], domains: [4, 0x47] })
  host.guestOpen(M1, 'guest1')
  settle(host)
}

/** T-33's action: unbind 05.0004 from vfio_ap. */
function unbind0504(host: EmulatedHostApi): string {
  return tryEcho(host, VFIO_UNBIND, '05.0004')
}

t.test('T-33 unbind from a running guest drops the whole adapter and resets its queues (B-31, V-33, V-20)', async (t) => {
  const host = newHost()
  attachedM1(host)
  t.equal(host.read(`${mdevPath(M1)}/guest_matrix`), '05.0004\n05.0047\n')
  const probe = new ResetProbe(host, ['05.0004', '05.0047'])
  const seq = lastSeq(host)
  t.equal(unbind0504(host), 'OK', 'unbind cannot be refused')
  t.equal(driverOf(host, '05.0004'), null, '05.0004 unbound')
  t.equal(statusOf(host, '05.0004'), null, 'status attribute removed with the driver')
  const last = lastApcb(host.events(seq), M1)
  t.ok(last, 'hot unplug pushed to the guest')
  if (last) t.equal(bare(last.apm), ALL_ZEROS, 'guest lost all of adapter 5, including 05.0047')
  t.ok(probe.wasReset('05.0004'), '05.0004 reset (ZAPQ)')
  t.ok(probe.wasReset('05.0047'), '05.0047 reset: the whole adapter left the guest (2024 fix)')
  t.equal(host.read(`${mdevPath(M1)}/matrix`), '05.0004\n05.0047\n', 'matrix still lists 05.0004')
  t.equal(host.read(`${mdevPath(M1)}/guest_matrix`), '', 'no 05.* lines')
  t.equal(statusOf(host, '05.0047'), 'in use', '05.0047 still linked to the attached mdev')
  t.equal(host.read('/sys/bus/ap/bindings'), '11/12\n')
})

t.test('T-34 binding 05.0004 back to vfio_ap hot-plugs adapter 5 again (V-30, V-33)', async (t) => {
  const host = newHost()
  attachedM1(host)
  unbind0504(host)
  const seq = lastSeq(host)
  t.equal(tryEcho(host, VFIO_BIND, '05.0004'), 'OK')
  t.equal(driverOf(host, '05.0004'), 'vfio_ap')
  t.equal(statusOf(host, '05.0004'), 'in use')
  const last = lastApcb(host.events(seq), M1)
  t.ok(last, 'hot plug pushed')
  if (last) {
    t.equal(bare(last.apm), maskHex([5]))
    t.equal(bare(last.aqm), maskHex([4, 0x47]))
  }
  t.equal(host.read(`${mdevPath(M1)}/guest_matrix`), '05.0004\n05.0047\n')
  t.equal(host.read('/sys/bus/ap/bindings'), '12/12 (complete)\n')
})

t.test('T-35 binding the unbound vfio_ap-owned 05.0004 to cex4queue is ENODEV (B-11, B-30)', async (t) => {
  const host = newHost()
  attachedM1(host)
  unbind0504(host)
  const before = busSnapshot(host)
  t.equal(tryEcho(host, ZQ_BIND, '05.0004'), 'ENODEV')
  t.same(busSnapshot(host), before)
  t.equal(driverOf(host, '05.0004'), null)
})

t.test('T-36 unbinding a vfio_ap queue from cex4queue is ENODEV (B-31)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  const before = busSnapshot(host)
  t.equal(tryEcho(host, ZQ_UNBIND, '05.0004'), 'ENODEV')
  t.same(busSnapshot(host), before)
  t.equal(driverOf(host, '05.0004'), 'vfio_ap')
  t.equal(tryEcho(host, ZQ_UNBIND, '99.0004'), 'ENODEV', 'no such device')
})

t.test('T-37 binding a bound device to its own driver is EBUSY (B-30, X-1, current-6.x)', async (t) => {
  const host = newHost({ kernel: 'current-6.x' })
  vfioMasks(host)
  const before = busSnapshot(host)
  t.equal(tryEcho(host, ZQ_BIND, '07.00ab'), 'EBUSY', 'zcrypt queue')
  t.equal(tryEcho(host, `${DRIVERS}/cex4card/bind`, 'card05'), 'EBUSY', 'card')
  t.equal(tryEcho(host, VFIO_BIND, '05.0004'), 'EBUSY', 'vfio_ap queue')
  t.equal(tryEcho(host, ZQ_BIND, '05.0004'), 'EBUSY', 'bound to another driver: also EBUSY')
  t.same(busSnapshot(host), before)
})

t.test('T-37 (profile note) legacy-5.x models 5.13..5.19, so an already bound queue is EBUSY there too (X-1)', async (t) => {
  t.comment('[emulator choice] kernels before 5.13 returned ENODEV (X-1); no profile models them')
  const host = newHost({ kernel: 'legacy-5.x' })
  t.equal(tryEcho(host, ZQ_BIND, '07.00ab'), 'EBUSY')
  t.equal(driverOf(host, '07.00ab'), 'cex4queue')
})

t.test('T-38 binding a card to vfio_ap is ENODEV: vfio_ap matches queues only (B-10, B-30)', async (t) => {
  const host = newHost()
  t.equal(tryEcho(host, VFIO_BIND, 'card05'), 'ENODEV', 'kind mismatch is checked before "already bound"')
  t.equal(driverOf(host, 'card05'), 'cex4card')
  t.equal(tryEcho(host, `${DRIVERS}/cex4card/unbind`, 'card05'), 'OK')
  t.equal(tryEcho(host, VFIO_BIND, 'card05'), 'ENODEV', 'unbound card: still ENODEV')
  t.equal(driverOf(host, 'card05'), null)
  t.equal(tryEcho(host, `${DRIVERS}/cex4card/bind`, 'card05'), 'OK')
  t.equal(driverOf(host, 'card05'), 'cex4card')
})

t.test('T-39 a second mdev for the same KVM is EPERM (V-25)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  createMdev(host, M1)
  createMdev(host, M2)
  assign(host, M1, { adapters: [5], domains: [4] })
  assign(host, M2, { adapters: [6], domains: [4] })
  host.guestOpen(M1, 'guest1')
  const seq = lastSeq(host)
  t.equal(
    errnoOf(() => host.guestOpen(M2, 'guest1')),
    'EPERM',
  )
  t.equal(statusOf(host, '06.0004'), 'assigned', 'M2 not attached')
  t.equal(statusOf(host, '05.0004'), 'in use', 'M1 unaffected')
  t.equal(lastApcb(host.events(seq), M2), undefined, 'no APCB loaded for M2')
  t.equal(
    errnoOf(() => host.guestOpen(M2, 'guest2')),
    'OK',
    'another guest may open M2',
  )
  t.equal(statusOf(host, '06.0004'), 'in use')
})

t.test('T-40 removing an attached mdev: legacy-5.x EBUSY (V-29 a, X-2)', async (t) => {
  const host = newHost({ kernel: 'legacy-5.x' })
  vfioMasks(host)
  createMdev(host, M1)
  assign(host, M1, { adapters: [5], domains: [4] })
  host.guestOpen(M1, 'guest1')
  const avail = host.read(`${TYPE_DIR}/available_instances`)
  t.equal(tryEcho(host, `${mdevPath(M1)}/remove`, 1), 'EBUSY')
  t.ok(host.exists(mdevPath(M1)), 'mdev still there')
  t.equal(host.read(`${mdevPath(M1)}/matrix`), '05.0004\n')
  t.equal(statusOf(host, '05.0004'), 'in use', 'guest still attached')
  t.equal(host.read(`${TYPE_DIR}/available_instances`), avail)
})

t.test(
  'T-40 removing an attached mdev: current-6.x blocks until the simulated QEMU releases it, then OK [emulator: QEMU releases at once] (V-29 b, V-27)',
  async (t) => {
    const host = newHost({ kernel: 'current-6.x' })
    vfioMasks(host)
    createMdev(host, M1)
    assign(host, M1, { adapters: [5, 6], domains: [4] })
    host.guestOpen(M1, 'guest1')
    settle(host)
    t.comment('the write "blocks" only in virtual terms: the simulated QEMU answers the request at once, so the write returns OK after the detach')
    const avail = Number(host.read(`${TYPE_DIR}/available_instances`))
    const probe = new ResetProbe(host, ['05.0004', '06.0004'])
    const seq = lastSeq(host)
    t.equal(tryEcho(host, `${mdevPath(M1)}/remove`, 1), 'OK')
    const evs = host.events(seq)
    t.ok(
      logs(evs).some((l) => /Relaying device request to user \(#\d+\)/.test(l.message)),
      'request eventfd relayed to the (simulated) user (E-4)',
    )
    const relayIdx = evs.findIndex((e) => e.kind === 'log' && e.message.startsWith('Relaying device request'))
    t.ok(relayIdx >= 0 && relayIdx < evs.findIndex((e) => e.kind === 'apcb'), 'request relayed before the APCB is cleared')
    const last = lastApcb(evs, M1)
    t.ok(last, 'guest APCB cleared')
    if (last) t.same([bare(last.apm), bare(last.aqm), bare(last.adm)], [ALL_ZEROS, ALL_ZEROS, ALL_ZEROS])
    for (const q of ['05.0004', '06.0004']) {
      t.ok(probe.wasReset(q), `${q} reset`)
      t.equal(statusOf(host, q), 'unassigned')
    }
    t.notOk(host.exists(mdevPath(M1)), 'mdev gone')
    t.equal(host.read(`${TYPE_DIR}/available_instances`), `${avail + 1}\n`)
    t.equal(
      errnoOf(() => host.guestClose(M1)),
      'ENODEV',
      'guest no longer holds it',
    )
  },
)

t.test('T-41 removing a detached mdev resets its queues; echo 0 > remove is a no-op (V-29)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  createMdev(host, M1)
  assign(host, M1, { adapters: [5], domains: [4, 0x47] })
  settle(host)
  const snap = mdevSnapshot(host, M1)
  t.equal(tryEcho(host, `${mdevPath(M1)}/remove`, 0), 'OK')
  t.ok(host.exists(mdevPath(M1)), 'still there after 0')
  t.same(mdevSnapshot(host, M1), snap)
  t.equal(tryEcho(host, `${mdevPath(M1)}/remove`, 'x'), 'EINVAL', 'parse failure')
  const probe = new ResetProbe(host, ['05.0004', '05.0047'])
  t.equal(tryEcho(host, `${mdevPath(M1)}/remove`, 1), 'OK')
  t.notOk(host.exists(mdevPath(M1)))
  for (const q of ['05.0004', '05.0047']) {
    t.ok(probe.wasReset(q), `${q} reset`)
    t.equal(statusOf(host, q), 'unassigned')
  }
  t.notOk(host.list(`${TYPE_DIR}/devices`).includes(M1))
})

const T42 = `${maskHex([5])},${maskHex([4])},${maskHex([4])}\n`

t.test('T-42 ap_config reads the assigned matrix as three 64-digit masks (V-22)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  createMdev(host, M1)
  assign(host, M1, { adapters: [5], domains: [4], control: [4] })
  const expected = `0x04${'0'.repeat(62)},0x08${'0'.repeat(62)},0x08${'0'.repeat(62)}\n`
  t.equal(expected, T42)
  t.equal(host.read(`${mdevPath(M1)}/ap_config`), expected)
  t.equal(expected.length, 3 * 66 + 2 + 1)
})

t.test('T-43 ap_config accepts short masks, padded on the right (V-23)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  createMdev(host, M1)
  t.equal(
    errnoOf(() => host.write(`${mdevPath(M1)}/ap_config`, '0x04,0x08,0x08\n')),
    'OK',
  )
  t.equal(host.read(`${mdevPath(M1)}/ap_config`), T42)
  t.equal(host.read(`${mdevPath(M1)}/matrix`), '05.0004\n')
  t.equal(host.read(`${mdevPath(M1)}/control_domains`), '0004\n')
  t.equal(statusOf(host, '05.0004'), 'assigned', 'the added queue is linked')
})

t.test('T-44 ap_config touching an APQN of M2 is EADDRINUSE and leaves M1 completely unchanged (V-23)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  createMdev(host, M1)
  createMdev(host, M2)
  assign(host, M2, { adapters: [5], domains: [4] })
  assign(host, M1, { adapters: [6], domains: [0x47], control: [0xab] })
  const snap = mdevSnapshot(host, M1)
  const bus = busSnapshot(host)
  const cfg = `${maskHex([5, 6])},${maskHex([4, 0x47])},${maskHex([4])}\n`
  t.equal(
    errnoOf(() => host.write(`${mdevPath(M1)}/ap_config`, cfg)),
    'EADDRINUSE',
  )
  t.same(mdevSnapshot(host, M1), snap, 'M1 unchanged, also the valid parts')
  t.equal(host.read(`${mdevPath(M1)}/matrix`), '06.0047\n')
  t.equal(host.read(`${mdevPath(M1)}/control_domains`), '00ab\n')
  t.same(busSnapshot(host), bus, 'no queue relinked')
  t.equal(host.read(`${mdevPath(M2)}/matrix`), '05.0004\n')
})

t.test('T-45 ap_config ",," clears everything and hot-unplugs an attached guest (V-23)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  createMdev(host, M1)
  assign(host, M1, { adapters: [5], domains: [4], control: [4] })
  host.guestOpen(M1, 'guest1')
  settle(host)
  const probe = new ResetProbe(host, ['05.0004'])
  const seq = lastSeq(host)
  t.equal(
    errnoOf(() => host.write(`${mdevPath(M1)}/ap_config`, ',,\n')),
    'OK',
  )
  t.equal(host.read(`${mdevPath(M1)}/ap_config`), `${ALL_ZEROS},${ALL_ZEROS},${ALL_ZEROS}\n`)
  t.equal(host.read(`${mdevPath(M1)}/matrix`), '')
  t.equal(host.read(`${mdevPath(M1)}/guest_matrix`), '')
  t.equal(host.read(`${mdevPath(M1)}/control_domains`), '')
  const last = lastApcb(host.events(seq), M1)
  t.ok(last, 'hot unplug pushed')
  if (last) t.same([bare(last.apm), bare(last.aqm), bare(last.adm)], [ALL_ZEROS, ALL_ZEROS, ALL_ZEROS])
  t.equal(statusOf(host, '05.0004'), 'unassigned')
  t.ok(probe.wasReset('05.0004'), 'queue that left the guest was reset')
})

t.test('T-46 two ap_config tokens: EINVAL without the newline, OK with it (empty third token) (V-23)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  createMdev(host, M1)
  assign(host, M1, { adapters: [5], domains: [4], control: [4] })
  const p = `${mdevPath(M1)}/ap_config`
  t.equal(
    errnoOf(() => host.write(p, '0x04,0x08')),
    'EINVAL',
    'echo -n: third token missing',
  )
  t.equal(host.read(p), T42, 'unchanged')
  t.equal(
    errnoOf(() => host.write(p, '0x04,0x08\n')),
    'OK',
  )
  t.equal(host.read(p), `${maskHex([5])},${maskHex([4])},${ALL_ZEROS}\n`, 'control domains cleared')
  t.equal(host.read(`${mdevPath(M1)}/control_domains`), '')
  t.equal(host.read(`${mdevPath(M1)}/matrix`), '05.0004\n')
})

t.test('T-47 ap_config with a domain above Nd=15 is ENODEV and nothing changes (V-23, V-4, O-2)', async (t) => {
  const p = loadProfile('spec-fixture')
  p.qci!.nd = 15
  const host = newHost({ profile: p })
  t.equal(host.read('/sys/bus/ap/ap_max_domain_id'), '15\n')
  vfioMasks(host)
  createMdev(host, M1)
  assign(host, M1, { adapters: [5], domains: [4] })
  const snap = mdevSnapshot(host, M1)
  const cfg = `${maskHex([5])},${maskHex([4, 0x20])},\n`
  t.equal(
    errnoOf(() => host.write(`${mdevPath(M1)}/ap_config`, cfg)),
    'ENODEV',
  )
  t.same(mdevSnapshot(host, M1), snap)
  t.equal(tryEcho(host, `${mdevPath(M1)}/assign_domain`, '0x20'), 'ENODEV', 'assign_domain agrees (V-11)')
  t.equal(tryEcho(host, `${mdevPath(M1)}/assign_domain`, 15), 'OK', '15 is in range')
})

t.test('T-58 guest AQIC enable with NIB 0 answers 06; an APQN outside the mdev answers 01 (V-40)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  createMdev(host, M1)
  assign(host, M1, { adapters: [5], domains: [4] })
  host.guestOpen(M1, 'guest1')
  t.equal(host.guestAqic(M1, '05.0004', 0), 0x06)
  t.equal(host.guestAqic(M1, '07.00ab', 0x1000), 0x01, 'not in the mdev')
  t.equal(host.guestAqic(M1, '06.0004', 0x1000), 0x01, 'vfio_ap-bound but not linked to M1')
})

t.test('T-59 two concurrent assigns of one APQN: exactly one wins, the other EADDRINUSE (X-5, V-10)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  createMdev(host, M1)
  createMdev(host, M2)
  assign(host, M1, { adapters: [5] })
  assign(host, M2, { adapters: [5] })
  const ah = new AsyncHost(host)
  const results = await Promise.allSettled([ah.write(`${mdevPath(M1)}/assign_domain`, '4\n'), ah.write(`${mdevPath(M2)}/assign_domain`, '4\n')])
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 1, 'exactly one fulfils')
  const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
  t.equal(rejected.length, 1)
  t.equal((rejected[0]?.reason as { errno?: string } | undefined)?.errno, 'EADDRINUSE')
  const m = [host.read(`${mdevPath(M1)}/matrix`), host.read(`${mdevPath(M2)}/matrix`)].sort()
  t.same(m, ['05.\n', '05.0004\n'], 'one mdev holds (5,4), the other kept only adapter 5')
  t.equal(await errnoOfAsync(() => ah.write(`${mdevPath(M1)}/assign_domain`, '0x47\n')), 'OK')
})

t.test('T-60 assign then unassign on an attached mdev: adapter 5 ends out of the guest, its queues reset (V-10, V-15)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  createMdev(host, M1)
  assign(host, M1, { adapters: [6], domains: [4, 0x47] })
  host.guestOpen(M1, 'guest1')
  settle(host)
  const seq = lastSeq(host)
  t.equal(tryEcho(host, `${mdevPath(M1)}/assign_adapter`, 5), 'OK')
  t.equal(host.read(`${mdevPath(M1)}/guest_matrix`), matrixText([5, 6], [4, 0x47]), 'hot-plugged in between')
  const probe = new ResetProbe(host, queuesOf([5], [4, 0x47]))
  t.equal(tryEcho(host, `${mdevPath(M1)}/unassign_adapter`, 5), 'OK')
  const evs = host.events(seq)
  const last = lastApcb(evs, M1)
  t.ok(last)
  if (last) {
    t.equal(bare(last.apm), maskHex([6]), 'guest APCB ends without adapter 5')
    t.equal(bare(last.aqm), maskHex([4, 0x47]))
  }
  for (const q of queuesOf([5], [4, 0x47])) {
    t.ok(probe.wasReset(q), `${q} reset`)
    t.equal(statusOf(host, q), 'unassigned')
  }
  t.equal(host.read(`${mdevPath(M1)}/guest_matrix`), matrixText([6], [4, 0x47]))
})
