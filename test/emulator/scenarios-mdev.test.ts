/**
 * docs/kernel-model.md §7 scenarios for mdev creation and assignment: T-15..T-32.
 * Setup unless stated: the §6 host with the T-15 masks (apmask -5,-6; aqmask -4,-0x47), see `vfioMasks`.
 */
import t from 'tap'
import {
  BUS,
  DRIVERS,
  M1,
  M2,
  ResetProbe,
  TYPE_DIR,
  allBut,
  assign,
  bare,
  createMdev,
  driverOf,
  errnoOf,
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
  apcbs,
  vfioMasks,
} from './helpers.js'

const AVAIL = `${TYPE_DIR}/available_instances`

t.test('T-15 create an mdev: OK and available_instances goes down by one (V-4, V-3)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  t.equal(host.read(`${BUS}/apmask`), `${maskHex(allBut(5, 6))}\n`)
  t.equal(host.read(`${BUS}/aqmask`), `${maskHex(allBut(4, 0x47))}\n`)
  const before = Number(host.read(AVAIL))
  t.equal(before, 256, '256 instances on a fresh host')
  t.equal(tryEcho(host, `${TYPE_DIR}/create`, M1), 'OK')
  t.equal(host.read(AVAIL), `${before - 1}\n`)
  t.ok(host.exists(mdevPath(M1)), 'mdev directory exists')
  t.ok(host.list(`${TYPE_DIR}/devices`).includes(M1), 'linked under devices/')
  t.equal(host.read(`${mdevPath(M1)}/matrix`), '', 'starts empty')
  t.equal(host.read(`${mdevPath(M1)}/guest_matrix`), '')
  t.equal(host.read(`${mdevPath(M1)}/control_domains`), '')
  t.equal(host.read(`${TYPE_DIR}/name`), 'VFIO AP Passthrough Device\n')
  t.equal(host.read(`${TYPE_DIR}/device_api`), 'vfio-ap\n')
})

t.test('T-16 creating the same UUID twice is EEXIST (V-4)', async (t) => {
  const host = newHost()
  createMdev(host, M1)
  const avail = host.read(AVAIL)
  t.equal(tryEcho(host, `${TYPE_DIR}/create`, M1), 'EEXIST')
  t.equal(host.read(AVAIL), avail, 'available_instances unchanged')
  t.equal(
    errnoOf(() => host.write(`${TYPE_DIR}/create`, M1)),
    'EEXIST',
    'also without the newline',
  )
})

t.test('T-17 create with a 35-character string is EINVAL (V-4)', async (t) => {
  const host = newHost()
  const short = M1.slice(0, 35)
  t.equal(short.length, 35)
  const avail = host.read(AVAIL)
  t.equal(
    errnoOf(() => host.write(`${TYPE_DIR}/create`, short)),
    'EINVAL',
    'echo -n: 35 characters',
  )
  t.equal(tryEcho(host, `${TYPE_DIR}/create`, short), 'EINVAL', 'echo: 35 characters + newline (newline is no UUID digit)')
  t.equal(tryEcho(host, `${TYPE_DIR}/create`, `${M1}a`), 'EINVAL', '37 characters without a final newline')
  t.equal(host.read(AVAIL), avail)
  t.same(host.list(`${TYPE_DIR}/devices`), [], 'nothing created')
})

t.test('T-18 assign adapter 5 then domain 4: matrix reads 05.0004 (V-10, V-11, V-19)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  createMdev(host, M1)
  t.equal(tryEcho(host, `${mdevPath(M1)}/assign_adapter`, 5), 'OK')
  t.equal(tryEcho(host, `${mdevPath(M1)}/assign_domain`, 4), 'OK')
  t.equal(host.read(`${mdevPath(M1)}/matrix`), '05.0004\n')
  t.equal(host.read(`${mdevPath(M1)}/guest_matrix`), '05.0004\n', 'bound to vfio_ap and in hostcfg: in the guest view (V-20)')
  t.equal(statusOf(host, '05.0004'), 'assigned', 'linked, no guest (V-31)')
  t.equal(statusOf(host, '05.0047'), 'unassigned')
})

t.test('T-19 matrix with only adapters reads 05., with only domains .0004 (V-19)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  createMdev(host, M1)
  createMdev(host, M2)
  assign(host, M1, { adapters: [5] })
  t.equal(host.read(`${mdevPath(M1)}/matrix`), '05.\n')
  assign(host, M2, { domains: [4] })
  t.equal(host.read(`${mdevPath(M2)}/matrix`), '.0004\n')
  assign(host, M1, { adapters: [6] })
  t.equal(host.read(`${mdevPath(M1)}/matrix`), '05.\n06.\n', 'one line per adapter, ascending')
})

t.test('T-20 with default masks an adapter alone assigns OK, the first domain is EADDRNOTAVAIL (V-12, V-10)', async (t) => {
  const host = newHost()
  createMdev(host, M1)
  t.equal(tryEcho(host, `${mdevPath(M1)}/assign_adapter`, 5), 'OK', 'empty product: no reservation check bites')
  t.equal(tryEcho(host, `${mdevPath(M1)}/assign_domain`, 4), 'EADDRNOTAVAIL')
  t.equal(host.read(`${mdevPath(M1)}/matrix`), '05.\n', 'domain 4 removed again')
  t.equal(driverOf(host, '05.0004'), 'cex4queue', 'the bus is untouched')
})

t.test('T-21 M2 may take adapter 5 alone, but domain 4 then collides with M1 (5,4): EADDRINUSE (V-10, V-12, E-4)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  createMdev(host, M1)
  createMdev(host, M2)
  assign(host, M1, { adapters: [5], domains: [4] })
  t.equal(tryEcho(host, `${mdevPath(M2)}/assign_adapter`, 5), 'OK')
  const seq = lastSeq(host)
  t.equal(tryEcho(host, `${mdevPath(M2)}/assign_domain`, 4), 'EADDRINUSE')
  t.equal(host.read(`${mdevPath(M2)}/matrix`), '05.\n', 'domain 4 removed again')
  t.equal(host.read(`${mdevPath(M1)}/matrix`), '05.0004\n')
  t.equal(statusOf(host, '05.0004'), 'assigned', 'still linked to M1')
  const msg = `Userspace may not re-assign queue 05.0004 already assigned to ${M1}`
  t.ok(
    logs(host.events(seq)).some((l) => l.message.includes(msg)),
    `log: ${msg}`,
  )
})

t.test('T-22 M1 (5,4) and M2 (5,0x47) share adapter 5: valid (V-10 exclusivity is per APQN)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  createMdev(host, M1)
  createMdev(host, M2)
  assign(host, M1, { adapters: [5], domains: [4] })
  t.equal(tryEcho(host, `${mdevPath(M2)}/assign_adapter`, 5), 'OK')
  t.equal(tryEcho(host, `${mdevPath(M2)}/assign_domain`, '0x47'), 'OK')
  t.equal(host.read(`${mdevPath(M1)}/matrix`), '05.0004\n')
  t.equal(host.read(`${mdevPath(M2)}/matrix`), '05.0047\n')
  t.equal(statusOf(host, '05.0004'), 'assigned')
  t.equal(statusOf(host, '05.0047'), 'assigned')
})

t.test('T-23 assign_adapter above apm_max is ENODEV (V-10, V-4 maxima)', async (t) => {
  const host = newHost()
  createMdev(host, M1)
  t.equal(tryEcho(host, `${mdevPath(M1)}/assign_adapter`, 256), 'ENODEV')
  t.equal(tryEcho(host, `${mdevPath(M1)}/assign_adapter`, 255), 'OK', 'Na=255: 255 is in range')
  t.equal(host.read(`${mdevPath(M1)}/matrix`), 'ff.\n')

  t.test('on a machine with Na=63, 64 is ENODEV', async (t) => {
    const p = loadProfile('spec-fixture')
    p.qci!.na = 63
    const h = newHost({ profile: p })
    createMdev(h, M1)
    t.equal(tryEcho(h, `${mdevPath(M1)}/assign_adapter`, 64), 'ENODEV')
    t.equal(tryEcho(h, `${mdevPath(M1)}/assign_adapter`, 63), 'OK')
    t.equal(h.read(`${mdevPath(M1)}/matrix`), '3f.\n')
  })
})

t.test('T-24 assign_adapter parses with kstrtoul base 0: 0x0a OK, 08 EINVAL, -1 EINVAL (V-6)', async (t) => {
  const host = newHost()
  createMdev(host, M1)
  const p = `${mdevPath(M1)}/assign_adapter`
  t.equal(tryEcho(host, p, '0x0a'), 'OK')
  t.equal(host.read(`${mdevPath(M1)}/matrix`), '0a.\n', 'APID 10')
  t.equal(tryEcho(host, p, '08'), 'EINVAL', 'bad octal')
  t.equal(tryEcho(host, p, '-1'), 'EINVAL')
  t.equal(tryEcho(host, p, ' 5'), 'EINVAL', 'space')
  t.equal(tryEcho(host, p, ''), 'EINVAL', 'empty')
  t.equal(tryEcho(host, p, '010'), 'OK', 'octal 010 = 8')
  t.equal(host.read(`${mdevPath(M1)}/matrix`), '08.\n0a.\n')
  t.comment('[emulator choice] a leading "+" is accepted as lib/kstrtox.c does (V-6 lists "signs" as rejected)')
  t.equal(tryEcho(host, p, '+11'), 'OK', '+11 accepted like kstrtoul')
  t.equal(host.read(`${mdevPath(M1)}/matrix`), '08.\n0a.\n0b.\n')
  t.equal(tryEcho(host, p, '99999999999999999999999'), 'ERANGE', 'overflow (V-6)')
})

t.test('T-25 re-assigning an assigned adapter on an attached mdev is a silent no-op (V-10 step 3)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  createMdev(host, M1)
  assign(host, M1, { adapters: [5], domains: [4] })
  host.guestOpen(M1, 'guest1')
  settle(host)
  const snap = mdevSnapshot(host, M1)
  const probe = new ResetProbe(host, ['05.0004'])
  const seq = lastSeq(host)
  t.equal(tryEcho(host, `${mdevPath(M1)}/assign_adapter`, 5), 'OK')
  t.same(mdevSnapshot(host, M1), snap, 'matrix, guest_matrix, control domains unchanged')
  t.same(host.events(seq), [], 'no log line, no APCB push, no uevent')
  t.notOk(probe.wasReset('05.0004'), 'no queue reset')
  t.equal(statusOf(host, '05.0004'), 'in use')
})

t.test('T-26 unassign_adapter of an unassigned adapter is OK, of 300 ENODEV (V-15)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  createMdev(host, M1)
  assign(host, M1, { adapters: [5], domains: [4] })
  const snap = mdevSnapshot(host, M1)
  t.equal(tryEcho(host, `${mdevPath(M1)}/unassign_adapter`, 9), 'OK')
  t.same(mdevSnapshot(host, M1), snap, 'no change')
  t.equal(tryEcho(host, `${mdevPath(M1)}/unassign_adapter`, 300), 'ENODEV')
  t.same(mdevSnapshot(host, M1), snap)
})

t.test('T-27 two mdevs may hold the same control domain (V-16)', async (t) => {
  const host = newHost()
  createMdev(host, M1)
  createMdev(host, M2)
  t.equal(tryEcho(host, `${mdevPath(M1)}/assign_control_domain`, '0x47'), 'OK')
  t.equal(tryEcho(host, `${mdevPath(M2)}/assign_control_domain`, '0x47'), 'OK')
  t.equal(host.read(`${mdevPath(M1)}/control_domains`), '0047\n')
  t.equal(host.read(`${mdevPath(M2)}/control_domains`), '0047\n')
})

t.test('T-28 a control domain outside hostcfg adm is assigned but filtered from the guest ADM (V-16, V-20, V-18)', async (t) => {
  const host = newHost()
  createMdev(host, M1)
  host.guestOpen(M1, 'guest1')
  const seq = lastSeq(host)
  t.equal(tryEcho(host, `${mdevPath(M1)}/assign_control_domain`, '0x10'), 'OK')
  t.equal(host.read(`${mdevPath(M1)}/control_domains`), '0010\n')
  t.equal(apcbs(host.events(seq), M1).length, 0, 'guest ADM unchanged: nothing pushed')
  t.equal(tryEcho(host, `${mdevPath(M1)}/assign_control_domain`, 4), 'OK')
  t.equal(host.read(`${mdevPath(M1)}/control_domains`), '0004\n0010\n', 'ascending, one per line')
  const last = lastApcb(host.events(seq), M1)
  t.ok(last, 'the ADM change for domain 4 was pushed')
  if (last) t.equal(bare(last.adm), maskHex([4]), 'guest ADM = mdev ADM ∩ hostcfg adm: 0x10 filtered')
})

t.test('T-29 an unbound queue drops its whole adapter from guest_matrix, its domain stays (V-20, V-33)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  createMdev(host, M1)
  assign(host, M1, { adapters: [5, 6], domains: [4, 0x47] })
  t.equal(host.read(`${mdevPath(M1)}/guest_matrix`), matrixText([5, 6], [4, 0x47]))
  settle(host)
  const probe = new ResetProbe(host, queuesOf([5, 6], [4, 0x47]))
  t.equal(tryEcho(host, `${DRIVERS}/vfio_ap/unbind`, '06.0047'), 'OK')
  t.ok(probe.wasReset('06.0004'), '06.0004 reset: its adapter left the guest view (V-33 step 2, 2024 fix)')
  t.notOk(probe.wasReset('05.0004'), 'adapter 5 untouched')
  t.equal(host.read(`${mdevPath(M1)}/guest_matrix`), '05.0004\n05.0047\n')
  t.equal(host.read(`${mdevPath(M1)}/matrix`), matrixText([5, 6], [4, 0x47]), 'assigned matrix keeps everything')
  t.equal(driverOf(host, '06.0047'), null)
  t.equal(statusOf(host, '06.0004'), 'assigned', '06.0004 is still linked')
})

t.test('T-30 an over-provisioned adapter is hot-plugged when hostcfg gains it (V-13, V-35..V-38, B-43)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  createMdev(host, M1)
  t.equal(tryEcho(host, `${mdevPath(M1)}/assign_adapter`, '0x20'), 'OK')
  t.equal(tryEcho(host, `${mdevPath(M1)}/assign_domain`, 4), 'OK', '(0x20,4) is outside apmask x aqmask')
  t.equal(host.read(`${mdevPath(M1)}/matrix`), '20.0004\n')
  t.equal(host.read(`${mdevPath(M1)}/guest_matrix`), '', 'not in hostcfg: filtered')
  host.guestOpen(M1, 'guest1')
  const seq = lastSeq(host)
  host.hardware({ action: 'add-adapter', apid: 0x20, rawType: 14, mode: 'cca' })
  t.ok(host.exists(`${BUS}/devices/card20`), 'card20 created by the notification scan')
  t.equal(driverOf(host, '20.0004'), 'vfio_ap')
  t.equal(driverOf(host, '20.00ab'), 'cex4queue', 'APQNs inside apmask x aqmask go to zcrypt')
  t.equal(statusOf(host, '20.0004'), 'in use')
  t.equal(host.read(`${mdevPath(M1)}/guest_matrix`), '20.0004\n')
  const evs = host.events(seq)
  const bindIdx = evs.findIndex((e) => e.kind === 'uevent' && e.action === 'bind' && e.devpath.endsWith('/20.0004'))
  const pushIdx = evs.findIndex((e) => e.kind === 'apcb' && e.uuid === M1 && bare(e.apm) === maskHex([0x20]))
  t.ok(bindIdx >= 0 && pushIdx > bindIdx, 'hot plug after 20.0004 bound, when the scan completes (V-36, V-37)')
  const last = lastApcb(evs, M1)
  t.ok(last, 'APCB pushed to the guest')
  if (last) {
    t.equal(bare(last.apm), maskHex([0x20]), 'guest APM gained 0x20')
    t.equal(bare(last.aqm), maskHex([4]))
  }
})

t.test('T-31 assign_adapter on an attached mdev hot-plugs the adapter (V-10 step 6, V-26)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  createMdev(host, M1)
  assign(host, M1, { adapters: [5], domains: [4] })
  host.guestOpen(M1, 'guest1')
  t.equal(statusOf(host, '06.0004'), 'unassigned')
  const seq = lastSeq(host)
  t.equal(tryEcho(host, `${mdevPath(M1)}/assign_adapter`, 6), 'OK')
  const last = lastApcb(host.events(seq), M1)
  t.ok(last, 'APCB pushed at once')
  if (last) {
    t.equal(bare(last.apm), maskHex([5, 6]))
    t.equal(bare(last.aqm), maskHex([4]))
    t.equal(last.guest, 'guest1')
  }
  t.equal(statusOf(host, '06.0004'), 'in use')
  t.equal(host.read(`${mdevPath(M1)}/guest_matrix`), '05.0004\n06.0004\n')
})

t.test('T-32 unassign_domain on an attached mdev unplugs it on every adapter and resets those queues (V-15, V-39)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  createMdev(host, M1)
  assign(host, M1, { adapters: [5, 6], domains: [4, 0x47] })
  host.guestOpen(M1, 'guest1')
  settle(host)
  const probe = new ResetProbe(host, queuesOf([5, 6], [4, 0x47]))
  const seq = lastSeq(host)
  t.equal(tryEcho(host, `${mdevPath(M1)}/unassign_domain`, 4), 'OK')
  const last = lastApcb(host.events(seq), M1)
  t.ok(last, 'APCB pushed')
  if (last) {
    t.equal(bare(last.apm), maskHex([5, 6]), 'adapters kept')
    t.equal(bare(last.aqm), maskHex([0x47]), 'domain 4 gone')
  }
  for (const q of ['05.0004', '06.0004']) {
    t.ok(probe.wasReset(q), `${q} reset (ZAPQ)`)
    t.equal(statusOf(host, q), 'unassigned', `${q} unassigned`)
  }
  for (const q of ['05.0047', '06.0047']) {
    t.notOk(probe.wasReset(q), `${q} not reset`)
    t.equal(statusOf(host, q), 'in use')
  }
  t.equal(host.read(`${mdevPath(M1)}/matrix`), '05.0047\n06.0047\n')
})
