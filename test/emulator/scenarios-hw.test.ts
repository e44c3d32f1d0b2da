/**
 * docs/kernel-model.md §7 scenarios for queue resets and hardware changes: T-48..T-53.
 * Each test boots a fresh §6 host; hardware changes go through `host.hardware(...)` (B-43: notify runs a scan).
 */
import path from 'node:path'
import t from 'tap'
import {
  ALL_ZEROS,
  BUS,
  M1,
  NO_RESET,
  RESET_IN_PROGRESS,
  ResetProbe,
  apcbs,
  assign,
  bare,
  createMdev,
  dev,
  driverOf,
  echo,
  errnoOf,
  hasUevent,
  lastApcb,
  lastSeq,
  maskHex,
  mdevPath,
  newHost,
  queuesOf,
  readOrNull,
  settle,
  statusOf,
  tryEcho,
  uevents,
  vfioMasks,
} from './helpers.js'

t.test('T-48 echo 1 > reset flushes 3 pending requests with EAGAIN and shows "Reset in progress." (O-13, B-16)', async (t) => {
  const host = newHost({ traceRequests: true })
  settle(host)
  t.equal(host.read(`${dev('05.0004')}/reset`), NO_RESET)
  t.equal(host.submitRequests('05.0004', 3), 3)
  const total = host.read(`${dev('05.0004')}/request_count`)
  const seq = lastSeq(host)
  t.equal(tryEcho(host, `${dev('05.0004')}/reset`, 1), 'OK')
  t.equal(host.requestStats('05.0004').flushed, 3)
  t.equal(host.events(seq).filter((e) => e.kind === 'request' && e.result === 'EAGAIN').length, 3, '3 requests completed with EAGAIN')
  t.equal(host.read(`${dev('05.0004')}/pendingq_count`), '0\n')
  t.equal(host.read(`${dev('05.0004')}/requestq_count`), '0\n')
  t.equal(host.read(`${dev('05.0004')}/request_count`), total, 'the total is not changed by a flush (B-16)')
  t.equal(host.read(`${dev('05.0004')}/reset`), RESET_IN_PROGRESS)
  settle(host)
  t.equal(host.read(`${dev('05.0004')}/reset`), NO_RESET, 'reset completed')
  t.equal(host.submitRequests('05.0004', 1), 1, 'queue usable again')
  t.equal(
    errnoOf(() => host.write(`${dev('05.0004')}/reset`, 'anything')),
    'OK',
    'any content, never fails',
  )
})

t.test('T-49 card config 0: after the scan the queues are config 0, flushed, CONFIG=0, online 1 is ENODEV, still bound (B-40, B-4, B-5, B-42)', async (t) => {
  const host = newHost()
  settle(host)
  t.equal(host.submitRequests('05.0004', 2), 2)
  const seq = lastSeq(host)
  t.equal(tryEcho(host, `${dev('card05')}/config`, 0), 'OK')
  t.equal(host.read(`${dev('card05')}/config`), '0\n')
  t.ok(hasUevent(host.events(seq), 'card05', 'CONFIG', '0'), 'CONFIG=0 on card05 at once (B-40)')
  t.equal(host.read(`${dev('05.0004')}/config`), '1\n', 'queues follow only on the next scan')
  host.scan()
  const evs = host.events(seq)
  for (const q of queuesOf([5])) {
    t.equal(host.read(`${dev(q)}/config`), '0\n', `${q} config 0`)
    t.ok(hasUevent(evs, q, 'CONFIG', '0'), `CONFIG=0 uevent for ${q}`)
    t.equal(driverOf(host, q), 'cex4queue', `${q} stays bound (B-5)`)
  }
  t.equal(host.requestStats('05.0004').flushed, 2, 'pending requests flushed')
  t.equal(tryEcho(host, `${dev('05.0004')}/online`, 1), 'ENODEV')
  t.ok(host.exists(dev('05.0004')), 'queue stays in sysfs')
  t.equal(host.read(`${BUS}/bindings`), '12/12 (complete)\n')
  t.equal(host.read(`${dev('06.0004')}/config`), '1\n', 'other adapters untouched')
  t.equal(tryEcho(host, `${dev('card05')}/config`, 2), 'EINVAL', 'only 0/1')
})

t.test('T-50 checkstop: chkstop 1, queues in ERROR with requests flushed; clearing re-initialises with a reset (B-4, B-17)', async (t) => {
  const host = newHost()
  settle(host)
  t.equal(host.submitRequests('05.0004', 2), 2)
  host.hardware({ action: 'checkstop', apid: 5 })
  t.equal(host.read(`${dev('card05')}/chkstop`), '1\n')
  for (const q of queuesOf([5])) t.equal(host.read(`${dev(q)}/chkstop`), '1\n', `${q} chkstop`)
  t.equal(host.requestStats('05.0004').flushed, 2, 'pending requests got EAGAIN')
  const states = readOrNull(host, `${dev('05.0004')}/states`)
  if (states !== null) t.match(states, /^ERROR/, 'debug states attribute shows ERROR')
  else t.comment('no debug `states` attribute: ERROR observed through B-17 only')
  t.equal(
    errnoOf(() => host.submitRequests('05.0004', 1)),
    'ENODEV',
    'not OPERATING: new requests refused (B-17)',
  )
  t.equal(host.read(`${dev('06.0004')}/chkstop`), '0\n')
  host.hardware({ action: 'checkstop-clear', apid: 5 })
  t.equal(host.read(`${dev('card05')}/chkstop`), '0\n')
  for (const q of queuesOf([5])) {
    t.equal(host.read(`${dev(q)}/chkstop`), '0\n')
    t.equal(host.read(`${dev(q)}/reset`), RESET_IN_PROGRESS, `${q} re-initialised with a reset`)
  }
  settle(host)
  t.equal(host.submitRequests('05.0004', 1), 1, 'usable again')
})

t.test('T-51 a mode change EP11 -> CCA removes and re-creates card07 and its queues; the guest sees 07 vanish and return (O-8, B-3)', async (t) => {
  const host = newHost()
  echo(host, `${BUS}/apmask`, '-7')
  createMdev(host, M1)
  assign(host, M1, { adapters: [7], domains: [4] })
  host.guestOpen(M1, 'guest1')
  settle(host)
  const fnBefore = parseInt(host.read(`${dev('card07')}/ap_functions`), 16)
  t.ok(fnBefore & 0x04000000, 'EP11 bit before')
  const seq = lastSeq(host)
  host.hardware({ action: 'set-mode', apid: 7, mode: 'cca' })
  const evs = host.events(seq)
  const ue = uevents(evs)
  const name = (e: { devpath: string }) => path.posix.basename(e.devpath)
  const idx = (action: string, n: string) => ue.findIndex((e) => e.action === action && name(e) === n)
  for (const q of queuesOf([7])) {
    t.ok(idx('remove', q) >= 0, `${q} removed`)
    t.ok(idx('remove', q) < idx('remove', 'card07'), `${q} removed before card07 (B-3 queues first)`)
    t.ok(idx('add', q) > idx('add', 'card07'), `${q} re-added after card07`)
  }
  t.ok(idx('remove', 'card07') >= 0 && idx('add', 'card07') > idx('remove', 'card07'), 'card07 removed then added')
  t.equal(ue.find((e) => e.action === 'add' && name(e) === 'card07')?.env.MODE, 'cca', 'MODE=cca on the new card (B-44)')
  const fnAfter = parseInt(host.read(`${dev('card07')}/ap_functions`), 16)
  t.ok(fnAfter & 0x10000000, 'CCA bit after')
  t.notOk(fnAfter & 0x04000000, 'EP11 bit gone')
  t.equal(driverOf(host, 'card07'), 'cex4card')
  t.equal(driverOf(host, '07.0004'), 'vfio_ap')
  t.equal(statusOf(host, '07.0004'), 'in use')
  const pushes = apcbs(evs, M1).map((e) => bare(e.apm))
  t.ok(pushes.includes(ALL_ZEROS), 'guest saw adapter 7 vanish')
  t.equal(pushes[pushes.length - 1], maskHex([7]), 'and reappear')
  t.ok(pushes.indexOf(ALL_ZEROS) < pushes.lastIndexOf(maskHex([7])), 'vanish before reappear')
  t.equal(host.read(`${mdevPath(M1)}/guest_matrix`), '07.0004\n')
})

t.test('T-52 hostcfg loses domain 0x47: guest AQM shrinks before the queues go, matrix keeps it (V-35, B-4)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  createMdev(host, M1)
  assign(host, M1, { adapters: [5], domains: [4, 0x47] })
  host.guestOpen(M1, 'guest1')
  settle(host)
  const probe = new ResetProbe(host, ['05.0004'])
  const seq = lastSeq(host)
  host.hardware({ action: 'remove-domain', apqi: 0x47 })
  const evs = host.events(seq)
  const apcbIdx = evs.findIndex((e) => e.kind === 'apcb' && e.uuid === M1)
  const rmIdx = evs.findIndex((e) => e.kind === 'uevent' && e.action === 'remove' && e.devpath.endsWith('/05.0047'))
  t.ok(apcbIdx >= 0, 'APCB pushed')
  t.ok(rmIdx >= 0, '05.0047 removed')
  t.ok(apcbIdx < rmIdx, 'guest AQM loses 0x47 before the queue device goes')
  const last = lastApcb(evs, M1)
  if (last) {
    t.equal(bare(last.aqm), maskHex([4]))
    t.equal(bare(last.apm), maskHex([5]), 'adapter 5 stays: 05.0004 is still bound')
  }
  for (const q of queuesOf([5, 6, 7], [0x47])) t.notOk(host.exists(dev(q)), `${q} removed`)
  t.equal(host.read(`${mdevPath(M1)}/matrix`), '05.0004\n05.0047\n')
  t.equal(host.read(`${mdevPath(M1)}/guest_matrix`), '05.0004\n')
  t.notOk(probe.wasReset('05.0004'), '05.0004 not reset (V-35: no reset on removal from hostcfg)')
  t.equal(statusOf(host, '05.0004'), 'in use')
  t.equal(host.read(`${BUS}/ap_usage_domain_mask`), `${maskHex([4, 0xab, 0xff])}\n`)
  t.equal(host.read(`${BUS}/bindings`), '9/9 (complete)\n')
})

t.test('T-53 an adapter with raw type 9 (CEX3C) gets no card device and is not hot-plugged (O-6, V-35)', async (t) => {
  const host = newHost()
  vfioMasks(host)
  echo(host, `${BUS}/apmask`, '-8')
  createMdev(host, M1)
  assign(host, M1, { adapters: [5, 8], domains: [4] })
  host.guestOpen(M1, 'guest1')
  t.equal(host.read(`${mdevPath(M1)}/guest_matrix`), '05.0004\n')
  const seq = lastSeq(host)
  host.hardware({ action: 'add-adapter', apid: 8, rawType: 9, mode: 'cca' })
  t.notOk(host.exists(`${BUS}/devices/card08`), 'no card08')
  t.notOk(host.exists(`${BUS}/devices/08.0004`), 'no queue 08.0004')
  t.equal(host.read(`${BUS}/ap_adapter_mask`), `${maskHex([5, 6, 7, 8])}\n`, 'hostcfg apm does contain adapter 8')
  t.equal(host.read(`${mdevPath(M1)}/guest_matrix`), '05.0004\n', 'not hot-plugged')
  const last = lastApcb(host.events(seq), M1)
  if (last) t.equal(bare(last.apm), maskHex([5]), 'any push keeps APM = {5}')
  t.equal(host.read(`${BUS}/bindings`), '12/12 (complete)\n')
})
