/**
 * docs/kernel-model.md §7 scenarios for the AP bus masks and attributes: T-01..T-14, T-54..T-56, T-61..T-64.
 * Each test boots a fresh host of the §6 setup and drives it only through sysfs and the host controls.
 */
import t from 'tap'
import {
  ALL_ONES,
  ALL_ZEROS,
  BUS,
  DRIVERS,
  FIXTURE_ADAPTERS,
  M1,
  NO_RESET,
  ResetProbe,
  allBut,
  assign,
  busSnapshot,
  cardName,
  createMdev,
  dev,
  driverOf,
  echo,
  errnoOf,
  hasUevent,
  lastSeq,
  loadProfile,
  logs,
  maskHex,
  newHost,
  queuesOf,
  readOrNull,
  settle,
  statusOf,
  tryEcho,
  uevents,
} from './helpers.js'

const APMASK = `${BUS}/apmask`
const AQMASK = `${BUS}/aqmask`

t.test('T-01 the default apmask reads 0x followed by 64 f (B-20)', async (t) => {
  const host = newHost()
  t.equal(host.read(APMASK), `${ALL_ONES}\n`)
  t.equal(ALL_ONES.length, 66)
  t.equal(host.read(AQMASK), `${ALL_ONES}\n`, 'aqmask defaults to all ones too')
})

t.test('T-02 3 cards and 12 queues; bindings counts queue devices only (O-5, O-10, B-34)', async (t) => {
  const host = newHost()
  const queues = queuesOf()
  t.same(host.list(`${BUS}/devices`), [...queues, 'card05', 'card06', 'card07'])
  t.equal(queues[0], '05.0004')
  t.equal(queues[11], '07.00ff')
  t.equal(host.read(`${BUS}/bindings`), '12/12 (complete)\n')
  for (const q of queues) t.equal(driverOf(host, q), 'cex4queue', `${q} bound to cex4queue`)
  for (const a of FIXTURE_ADAPTERS) t.equal(driverOf(host, cardName(a)), 'cex4card', `${cardName(a)} bound to cex4card`)
  t.ok(host.exists('/sys/devices/ap/card05/05.0004'), 'queue device sits under its card (O-10)')
  t.equal(tryEcho(host, `${DRIVERS}/cex4card/unbind`, 'card05'), 'OK')
  t.equal(host.read(`${BUS}/bindings`), '12/12 (complete)\n', 'an unbound card does not count: cards are never counted')
})

t.test('T-03 echo -5,-6 > apmask reprobes 05.*/06.* to vfio_ap, cards stay on cex4card (B-25, B-11, V-30)', async (t) => {
  const host = newHost()
  const seq = lastSeq(host)
  t.equal(tryEcho(host, APMASK, '-5,-6'), 'OK')
  t.equal(host.read(APMASK), `${maskHex(allBut(5, 6))}\n`)
  t.ok(host.read(APMASK).startsWith('0xf9ff'), 'bits 5 and 6 cleared in the first byte')
  for (const q of queuesOf([5, 6])) {
    t.equal(driverOf(host, q), 'vfio_ap', `${q} bound to vfio_ap`)
    t.equal(statusOf(host, q), 'unassigned', `${q} status (V-31)`)
    t.equal(readOrNull(host, `${dev(q)}/online`), null, `${q} has no zcrypt online attribute (O-13)`)
  }
  for (const q of queuesOf([7])) {
    t.equal(driverOf(host, q), 'cex4queue', `${q} untouched`)
    t.equal(statusOf(host, q), null, `${q} has no vfio_ap status`)
  }
  t.equal(driverOf(host, 'card05'), 'cex4card', 'cards are not gated (B-11)')
  t.equal(driverOf(host, 'card06'), 'cex4card')
  t.equal(host.read(`${BUS}/bindings`), '12/12 (complete)\n')
  t.ok(hasUevent(host.events(seq), 'ap', 'APMASK', maskHex(allBut(5, 6))), 'APMASK= uevent on the AP root (B-25, B-44)')
})

t.test('T-04 echo 0x41 > apmask sets bits 1 and 7 only (B-21 absolute, right padding)', async (t) => {
  const host = newHost()
  t.equal(tryEcho(host, APMASK, '0x41'), 'OK')
  t.equal(host.read(APMASK), `0x41${'0'.repeat(62)}\n`)
  t.equal(host.read(APMASK), `${maskHex([1, 7])}\n`)
  for (const q of queuesOf([5, 6])) t.equal(driverOf(host, q), 'vfio_ap', `${q} moved to vfio_ap`)
  for (const q of queuesOf([7])) t.equal(driverOf(host, q), 'cex4queue', `${q} (APID 7 still in apmask) stays`)
})

t.test('T-05 echo 0X41 > apmask (uppercase X) is EINVAL and changes nothing (B-21, B-22)', async (t) => {
  const host = newHost()
  const before = busSnapshot(host)
  const seq = lastSeq(host)
  t.equal(tryEcho(host, APMASK, '0X41'), 'EINVAL')
  t.same(busSnapshot(host), before)
  t.equal(host.read(APMASK), `${ALL_ONES}\n`)
  t.same(uevents(host.events(seq)), [], 'no uevent')
})

t.test('T-06 echo +1,+300 > apmask is EINVAL and bit 1 is not set: all or nothing (B-21, B-22)', async (t) => {
  const host = newHost()
  echo(host, APMASK, '-1')
  t.equal(host.read(APMASK), `${maskHex(allBut(1))}\n`, 'precondition: bit 1 cleared')
  const before = busSnapshot(host)
  t.equal(tryEcho(host, APMASK, '+1,+300'), 'EINVAL')
  t.equal(host.read(APMASK), `${maskHex(allBut(1))}\n`, 'bit 1 still clear')
  t.same(busSnapshot(host), before)
})

t.test('T-07 echo +010 > apmask sets bit 8: octal base auto-detection (B-21)', async (t) => {
  const host = newHost()
  echo(host, APMASK, '-8,-10')
  t.equal(host.read(APMASK), `${maskHex(allBut(8, 10))}\n`)
  t.ok(host.read(APMASK).startsWith('0xff5f'), 'precondition: bits 8 and 10 cleared')
  t.equal(tryEcho(host, APMASK, '+010'), 'OK')
  t.equal(host.read(APMASK), `${maskHex(allBut(10))}\n`, 'bit 8 set, bit 10 (decimal reading) still clear')
})

t.test('T-08 echo "+1, +2" > apmask is EINVAL: a space invalidates the term (B-21, B-22)', async (t) => {
  const host = newHost()
  echo(host, APMASK, '-1,-2')
  const before = busSnapshot(host)
  t.equal(tryEcho(host, APMASK, '+1, +2'), 'EINVAL')
  t.equal(host.read(APMASK), `${maskHex(allBut(1, 2))}\n`, 'neither bit set')
  t.same(busSnapshot(host), before)
})

t.test('T-09 echo -5-3 > apmask is EINVAL: N > M (B-21)', async (t) => {
  const host = newHost()
  const before = busSnapshot(host)
  t.equal(tryEcho(host, APMASK, '-5-3'), 'EINVAL')
  t.same(busSnapshot(host), before)
  t.equal(driverOf(host, '05.0004'), 'cex4queue')
})

t.test('T-10 a 65-hex-digit absolute mask is EINVAL (B-21)', async (t) => {
  const host = newHost()
  echo(host, APMASK, '-5')
  const before = busSnapshot(host)
  t.equal(tryEcho(host, APMASK, `0x${'f'.repeat(65)}`), 'EINVAL')
  t.same(busSnapshot(host), before)
  t.equal(host.read(APMASK), `${maskHex(allBut(5))}\n`, 'bit 5 still clear')
  t.equal(tryEcho(host, APMASK, `0x${'f'.repeat(64)}`), 'OK', 'exactly 64 digits is accepted')
  t.equal(host.read(APMASK), `${ALL_ONES}\n`)
})

t.test('T-11 echo 0x > apmask gives all zeros; complete only because vfio_ap is loaded (B-21, B-27)', async (t) => {
  const host = newHost()
  t.equal(tryEcho(host, APMASK, '0x'), 'OK')
  t.equal(host.read(APMASK), `${ALL_ZEROS}\n`)
  for (const q of queuesOf()) t.equal(driverOf(host, q), 'vfio_ap', `${q} moved off zcrypt`)
  for (const a of FIXTURE_ADAPTERS) t.equal(driverOf(host, cardName(a)), 'cex4card')
  t.equal(host.read(`${BUS}/bindings`), '12/12 (complete)\n')

  const h1 = newHost()
  t.equal(
    errnoOf(() => h1.write(APMASK, '\n')),
    'OK',
    'echo > apmask (empty line)',
  )
  t.equal(h1.read(APMASK), `${ALL_ZEROS}\n`, 'an empty line is an all-zero mask too (B-21)')

  t.test('without vfio_ap loaded the same write leaves every queue unbound', async (t) => {
    const p = loadProfile('spec-fixture')
    p.modules = { vfio_ap: false }
    const h2 = newHost({ profile: p })
    t.equal(tryEcho(h2, APMASK, '0x'), 'OK')
    for (const q of queuesOf()) t.equal(driverOf(h2, q), null, `${q} unbound`)
    t.equal(h2.read(`${BUS}/bindings`), '0/12\n')
  })
})

t.test('T-12 echo +5 > apmask with (5,4) assigned to an attached mdev is EBUSY with a log line (B-24, V-41, E-4)', async (t) => {
  const host = newHost()
  echo(host, APMASK, '-5')
  createMdev(host, M1)
  assign(host, M1, { adapters: [5], domains: [4] })
  host.guestOpen(M1, 'guest1')
  const before = busSnapshot(host)
  const seq = lastSeq(host)
  t.equal(tryEcho(host, APMASK, '+5'), 'EBUSY')
  t.same(busSnapshot(host), before, 'nothing changed')
  t.equal(host.read(APMASK), `${maskHex(allBut(5))}\n`)
  const msg = `Userspace may not re-assign queue 05.0004 already assigned to ${M1}`
  t.ok(
    logs(host.events(seq)).some((l) => l.message.includes(msg)),
    `log: ${msg}`,
  )
  t.same(
    uevents(host.events(seq)).filter((e) => 'APMASK' in e.env),
    [],
    'no APMASK uevent',
  )
  t.equal(host.read(`/sys/devices/vfio_ap/matrix/${M1}/matrix`), '05.0004\n')
})

t.test('T-13 the veto looks only at apmask x aqmask: +5 OK while aqmask bit 4 is clear, then +4 > aqmask EBUSY (B-24)', async (t) => {
  const host = newHost()
  echo(host, APMASK, '-5')
  createMdev(host, M1)
  assign(host, M1, { adapters: [5], domains: [4] })
  echo(host, AQMASK, '-4')
  t.equal(tryEcho(host, APMASK, '+5'), 'OK', '(5,4) is still outside apmask x aqmask')
  t.equal(host.read(APMASK), `${ALL_ONES}\n`)
  t.equal(driverOf(host, '05.0004'), 'vfio_ap', '05.0004 stays with vfio_ap (aqmask bit 4 clear)')
  t.equal(statusOf(host, '05.0004'), 'assigned')
  for (const q of ['05.0047', '05.00ab', '05.00ff']) t.equal(driverOf(host, q), 'cex4queue', `${q} back to zcrypt`)
  const before = busSnapshot(host)
  const seq = lastSeq(host)
  t.equal(tryEcho(host, AQMASK, '+4'), 'EBUSY')
  t.same(busSnapshot(host), before, 'nothing changed')
  t.equal(host.read(AQMASK), `${maskHex(allBut(4))}\n`)
  t.ok(
    logs(host.events(seq)).some((l) => l.message.includes(`Userspace may not re-assign queue 05.0004 already assigned to ${M1}`)),
    'E-4 log line on the aqmask veto too',
  )
})

t.test('T-14 an assigned but never opened mdev still vetoes +5 > apmask with EBUSY (V-41)', async (t) => {
  const host = newHost()
  echo(host, APMASK, '-5')
  createMdev(host, M1)
  assign(host, M1, { adapters: [5], domains: [4] })
  t.equal(statusOf(host, '05.0004'), 'assigned', 'no guest: status assigned, not in use')
  const before = busSnapshot(host)
  t.equal(tryEcho(host, APMASK, '+5'), 'EBUSY')
  t.same(busSnapshot(host), before)
})

t.test('T-54 config_time accepts 5..120 only (B-34)', async (t) => {
  const host = newHost()
  const p = `${BUS}/config_time`
  t.equal(host.read(p), '30\n', 'default 30 (B-1)')
  t.equal(tryEcho(host, p, 3), 'EINVAL')
  t.equal(tryEcho(host, p, 121), 'EINVAL')
  t.equal(host.read(p), '30\n', 'unchanged after the failures')
  t.equal(tryEcho(host, p, 60), 'OK')
  t.equal(host.read(p), '60\n')
  t.equal(tryEcho(host, p, 5), 'OK', 'lower bound')
  t.equal(tryEcho(host, p, 120), 'OK', 'upper bound')
  t.equal(host.read(p), '120\n')
})

t.test('T-55 ap_domain refuses a domain cleared in aqmask with EINVAL (B-34, B-36)', async (t) => {
  const host = newHost()
  const p = `${BUS}/ap_domain`
  t.equal(host.read(p), '4\n', 'default domain: lowest configured, aqmask-owned, responding domain (B-36)')
  echo(host, AQMASK, '-0x47')
  t.equal(tryEcho(host, p, '0x47'), 'EINVAL')
  t.equal(host.read(p), '4\n', 'unchanged')
  t.equal(tryEcho(host, p, '0xab'), 'OK', '%i base auto-detection')
  t.equal(host.read(p), '171\n')
})

t.test('T-56 without vfio_ap, echo -5 > apmask leaves 05.* unbound and bindings incomplete (B-27)', async (t) => {
  const p = loadProfile('spec-fixture')
  p.modules = { vfio_ap: false }
  const host = newHost({ profile: p })
  t.notOk(host.exists(`${DRIVERS}/vfio_ap`), 'no vfio_ap driver directory')
  t.equal(host.read(`${BUS}/bindings`), '12/12 (complete)\n')
  t.equal(tryEcho(host, APMASK, '-5'), 'OK')
  for (const q of queuesOf([5])) t.equal(driverOf(host, q), null, `${q} unbound`)
  for (const q of queuesOf([6, 7])) t.equal(driverOf(host, q), 'cex4queue')
  t.equal(driverOf(host, 'card05'), 'cex4card')
  t.equal(host.read(`${BUS}/bindings`), '8/12\n')
})

t.test('T-61 +6 > apmask moves unassigned vfio_ap queues back to zcrypt: ZAPQ, status gone, online 1 (B-25, B-14, V-33)', async (t) => {
  const host = newHost()
  echo(host, APMASK, '-6')
  t.equal(driverOf(host, '06.0004'), 'vfio_ap')
  t.equal(statusOf(host, '06.0004'), 'unassigned')
  settle(host)
  const probe = new ResetProbe(host, queuesOf([6]))
  const seq = lastSeq(host)
  t.equal(tryEcho(host, APMASK, '+6'), 'OK')
  for (const q of queuesOf([6])) {
    t.equal(driverOf(host, q), 'cex4queue', `${q} on cex4queue`)
    t.equal(statusOf(host, q), null, `${q} status attribute gone`)
    t.ok(probe.wasReset(q), `${q} was reset on the way out`)
  }
  settle(host)
  for (const q of queuesOf([6])) t.equal(host.read(`${dev(q)}/online`), '1\n', `${q} online`)
  t.ok(hasUevent(host.events(seq), 'ap', 'APMASK', ALL_ONES), 'APMASK uevent')
})

t.test('T-62 echo 0 > card05/online takes the card and its queues offline, flushes, ONLINE=0 uevents (B-41, B-16)', async (t) => {
  const host = newHost({ traceRequests: true })
  t.equal(host.submitRequests('05.0004', 3), 3)
  const seq = lastSeq(host)
  t.equal(tryEcho(host, `${dev('card05')}/online`, 0), 'OK')
  t.equal(host.read(`${dev('card05')}/online`), '0\n')
  for (const q of queuesOf([5])) t.equal(host.read(`${dev(q)}/online`), '0\n', `${q} offline`)
  for (const q of queuesOf([6])) t.equal(host.read(`${dev(q)}/online`), '1\n', `${q} still online`)
  t.equal(host.requestStats('05.0004').flushed, 3, 'the 3 requests completed with EAGAIN')
  t.equal(host.read(`${dev('05.0004')}/requestq_count`), '0\n')
  t.equal(host.read(`${dev('05.0004')}/pendingq_count`), '0\n')
  const evs = host.events(seq)
  t.equal(evs.filter((e) => e.kind === 'request' && e.apqn === '05.0004' && e.result === 'EAGAIN').length, 3)
  t.ok(hasUevent(evs, 'card05', 'ONLINE', '0'), 'ONLINE=0 for card05')
  for (const q of queuesOf([5])) t.ok(hasUevent(evs, q, 'ONLINE', '0'), `ONLINE=0 for ${q}`)
  t.equal(host.read(`${dev('05.0004')}/config`), '1\n', 'offline is not deconfigured')
  t.equal(driverOf(host, '05.0004'), 'cex4queue', 'still bound')
})

t.test('T-63 boot with ap.aqmask=+0-255,-4 selects default domain 71 and keeps it (B-20, B-36)', async (t) => {
  const p = loadProfile('spec-fixture')
  p.boot = { aqmask: '+0-255,-4' }
  const host = newHost({ profile: p })
  t.equal(host.read(AQMASK), `${maskHex(allBut(4))}\n`)
  t.equal(host.read(`${BUS}/ap_domain`), '71\n')
  t.equal(driverOf(host, '05.0004'), 'vfio_ap', 'domain 4 not in aqmask: vfio_ap owns it')
  echo(host, AQMASK, '-0x47')
  host.scan()
  t.equal(host.read(`${BUS}/ap_domain`), '71\n', 'not changed by a later mask edit and scan')
})

t.test('T-64 the same apmask written twice: the second write is OK and a no-op (B-23)', async (t) => {
  const host = newHost()
  t.equal(tryEcho(host, APMASK, '0x80'), 'OK')
  t.equal(host.read(APMASK), `${maskHex([0])}\n`)
  for (const q of queuesOf()) t.equal(driverOf(host, q), 'vfio_ap')
  settle(host)
  const before = busSnapshot(host)
  const seq = lastSeq(host)
  t.equal(tryEcho(host, APMASK, '0x80'), 'OK')
  t.same(busSnapshot(host), before)
  t.same(uevents(host.events(seq)), [], 'no APMASK uevent, no unbind/bind uevents')
  for (const q of queuesOf()) t.equal(host.read(`${dev(q)}/reset`), NO_RESET, `${q} was not reprobed (no reset)`)
  t.equal(
    errnoOf(() => host.write(APMASK, '0x80')),
    'OK',
    'echo -n form is a no-op as well',
  )
  t.same(uevents(host.events(seq)), [])
})
