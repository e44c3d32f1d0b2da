/**
 * Change detection from kernel uevents: the parser on `udevadm monitor --kernel --property` output as
 * systemd's udevadm prints it (banner, `KERNEL[sec.usec] action devpath (subsystem)`, `KEY=value` lines, a
 * blank line), with the AP bus's own uevents (B-44, B-25, B-35) and the mdev core's; and the monitor child:
 * arguments, restart with backoff after it dies, giving up (auto mode) when it never gets set up. The
 * child is a fake `udevadm` script, so the tests need neither root nor an s390 kernel.
 */
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { ChangeWatcher, findExecutable } from '../../src/bus/change-watcher.js'
import type { BusChange } from '../../src/bus/port.js'
import { UDEVADM_MONITOR_ARGS, UdevMonitor } from '../../src/bus/udev-monitor.js'
import { UeventParser, type MonitorItem, type MonitorUevent } from '../../src/bus/uevent-parser.js'
import { tempDir } from './sysfs-tree.js'

/** What `udevadm monitor --kernel --property --subsystem-match=ap --subsystem-match=mdev` prints on an LPAR. */
const SAMPLE = `monitor will print the received events for:
KERNEL - the kernel uevent

KERNEL[8412.112233] change   /devices/ap (ap)
ACTION=change
DEVPATH=/devices/ap
SUBSYSTEM=ap
APMASK=0xfbffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff
SEQNUM=5120

KERNEL[8412.113001] unbind   /devices/ap/card05/05.0004 (ap)
ACTION=unbind
DEVPATH=/devices/ap/card05/05.0004
SUBSYSTEM=ap
SEQNUM=5121

KERNEL[8412.114570] bind     /devices/ap/card05/05.0004 (ap)
ACTION=bind
DEVPATH=/devices/ap/card05/05.0004
SUBSYSTEM=ap
DRIVER=vfio_ap
MODE=cca
SEQNUM=5122

KERNEL[8413.000007] add      /devices/vfio_ap/matrix/11111111-2222-4333-8444-555555555555 (mdev)
ACTION=add
DEVPATH=/devices/vfio_ap/matrix/11111111-2222-4333-8444-555555555555
SUBSYSTEM=mdev
MDEV_TYPE=vfio_ap-passthrough
SEQNUM=5123

KERNEL[8420.500000] change   /devices/ap/card06 (ap)
ACTION=change
DEVPATH=/devices/ap/card06
SUBSYSTEM=ap
CONFIG=0
SEQNUM=5124

`

function events(items: MonitorItem[]): MonitorUevent[] {
  return items.flatMap((i) => (i.kind === 'event' ? [i.event] : []))
}

t.test('parser: the documented output, whole', async (t) => {
  const p = new UeventParser()
  const items = [...p.push(SAMPLE), ...p.end()]
  t.same(
    items.filter((i) => i.kind === 'banner').map((i) => (i as { line: string }).line),
    ['monitor will print the received events for:', 'KERNEL - the kernel uevent'],
    'the banner lines',
  )
  const ev = events(items)
  t.same(
    ev.map((e) => [e.action, e.devpath, e.subsystem]),
    [
      ['change', '/devices/ap', 'ap'],
      ['unbind', '/devices/ap/card05/05.0004', 'ap'],
      ['bind', '/devices/ap/card05/05.0004', 'ap'],
      ['add', '/devices/vfio_ap/matrix/11111111-2222-4333-8444-555555555555', 'mdev'],
      ['change', '/devices/ap/card06', 'ap'],
    ],
  )
  t.same(
    ev[0],
    {
      source: 'KERNEL',
      timestamp: 8412.112233,
      action: 'change',
      devpath: '/devices/ap',
      subsystem: 'ap',
      env: { ACTION: 'change', DEVPATH: '/devices/ap', SUBSYSTEM: 'ap', APMASK: `0xfb${'f'.repeat(62)}`, SEQNUM: '5120' },
    },
    'B-25: the APMASK= uevent of the AP root device',
  )
  t.equal(ev[2]!.env.DRIVER, 'vfio_ap')
  t.equal(ev[3]!.env.MDEV_TYPE, 'vfio_ap-passthrough')
  t.equal(ev[4]!.env.CONFIG, '0', 'B-40: CONFIG=0')
})

t.test('parser: any chunking gives the same events; CRLF, a missing final blank line and UDEV lines', async (t) => {
  const whole = events(new UeventParser().push(SAMPLE))
  for (const size of [1, 2, 3, 7, 64, 1000]) {
    const p = new UeventParser()
    const got: MonitorItem[] = []
    for (let i = 0; i < SAMPLE.length; i += size) got.push(...p.push(SAMPLE.slice(i, i + size)))
    got.push(...p.end())
    t.same(events(got), whole, `chunks of ${size}`)
  }
  const p = new UeventParser()
  const crlf = events([...p.push('KERNEL[1.000001] remove /devices/ap/card07 (ap)\r\nACTION=remove\r\nSEQNUM=9\r\n'), ...p.end()])
  t.same(
    crlf.map((e) => [e.action, e.env.SEQNUM]),
    [['remove', '9']],
    'CRLF, and the last event without its blank line at end()',
  )
  const q = new UeventParser()
  const two = events(q.push('UDEV  [5.000000] add      /devices/ap/card07 (ap)\nACTION=add\nKERNEL[5.000001] add      /devices/ap/card08 (ap)\nACTION=add\n\n'))
  t.same(
    two.map((e) => [e.source, e.devpath]),
    [
      ['UDEV', '/devices/ap/card07'],
      ['KERNEL', '/devices/ap/card08'],
    ],
    'a header ends the previous event',
  )
  const old = events(new UeventParser().push('UEVENT[1191251184.382314] add      /devices/ap/card05 (ap)\nACTION=add\n\n'))
  t.equal(old[0]?.source, 'KERNEL', 'the pre-udevadm UEVENT prefix')
})

t.test('parser: junk is ignored, huge lines are dropped, values keep their = signs', async (t) => {
  const p = new UeventParser()
  const items = p.push(`garbage line\nKERNEL[1.5] change /devices/ap (ap)\nnot a property\nX=a=b\n\n${'y'.repeat(20_000)}`)
  const ev = events(items)
  t.same(
    ev.map((e) => e.env),
    [{ X: 'a=b' }],
  )
  t.same(
    items.filter((i) => i.kind === 'banner').map((i) => (i as { line: string }).line),
    ['garbage line'],
  )
  t.same(p.push('\n'), [], 'the runaway line was dropped, not parsed')
})

/** A fake `udevadm` that prints the banner and events, then exits (or sleeps); every start is logged to `starts`. */
function fakeUdevadm(dir: string, body: string): string {
  const file = path.join(dir, 'udevadm')
  fs.writeFileSync(file, `#!/bin/sh\necho "$$ $*" >> "${dir}/starts"\n${body}\n`, { mode: 0o755 })
  return file
}

function starts(dir: string): string[] {
  try {
    return fs.readFileSync(path.join(dir, 'starts'), 'utf8').trim().split('\n').filter(Boolean)
  } catch {
    return []
  }
}

async function until(what: string, pred: () => boolean, ms = 8000): Promise<void> {
  const end = Date.now() + ms
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

t.test('monitor: runs udevadm with the documented arguments, delivers events, restarts a dead child with backoff', async (t) => {
  const dir = tempDir(t)
  const sample = path.join(dir, 'sample')
  fs.writeFileSync(sample, SAMPLE)
  const cmd = fakeUdevadm(dir, `cat "${sample}"\nsleep 0.05\nexit 3`)
  const got: MonitorUevent[] = []
  const ready: number[] = []
  const logs: string[] = []
  const m = new UdevMonitor({
    command: cmd,
    onEvent: (e) => void got.push(e),
    onReady: (i) => void ready.push(i.restarts),
    log: (l) => void logs.push(l),
    minBackoffMs: 50,
    maxBackoffMs: 200,
  })
  t.teardown(() => m.stop())
  m.start()
  await until('three starts', () => starts(dir).length >= 3)
  const s = starts(dir)
  t.match(s[0], new RegExp(` ${UDEVADM_MONITOR_ARGS.join(' ')}$`), 'udevadm monitor --kernel --property --subsystem-match=ap --subsystem-match=mdev')
  await until('the events of three runs', () => got.length >= 15)
  t.same(
    got.slice(0, 5).map((e) => e.env.SEQNUM),
    ['5120', '5121', '5122', '5123', '5124'],
  )
  t.same(ready.slice(0, 3), [0, 1, 2], 'ready after the first start and after every restart')
  t.ok(m.restarts >= 2)
  t.ok(
    logs.some((l) => /exited \(code 3\); restarting in 50 ms/.test(l)),
    'first restart after the minimum backoff',
  )
  t.ok(
    logs.some((l) => /restarting in 100 ms/.test(l)),
    'then doubled',
  )
  await m.stop()
  const n = starts(dir).length
  await new Promise((r) => setTimeout(r, 400))
  t.equal(starts(dir).length, n, 'no restart after stop()')
})

t.test('monitor: stop() ends a running child', async (t) => {
  const dir = tempDir(t)
  const cmd = fakeUdevadm(dir, `echo "KERNEL - the kernel uevent"\necho\nexec sleep 30`)
  let ready = 0
  const m = new UdevMonitor({ command: cmd, onEvent: () => undefined, onReady: () => void ready++ })
  m.start()
  await until('ready', () => ready === 1)
  const pid = Number(starts(dir)[0]!.split(' ')[0])
  await m.stop()
  t.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, 'the child is gone')
})

t.test('monitor: a child that never gets set up is given up after maxStartFailures (auto falls back to polling)', async (t) => {
  const dir = tempDir(t)
  const cmd = fakeUdevadm(dir, `echo "Failed to create sd-device monitor: Operation not permitted" >&2\nexit 1`)
  const why: string[] = []
  const logs: string[] = []
  const m = new UdevMonitor({
    command: cmd,
    onEvent: () => undefined,
    minBackoffMs: 10,
    maxBackoffMs: 20,
    maxStartFailures: 3,
    onGiveUp: (w) => void why.push(w),
    log: (l) => void logs.push(l),
  })
  m.start()
  await until('give up', () => why.length === 1)
  t.equal(starts(dir).length, 3)
  t.match(why[0], /exited 3 times before it was set up/)
  t.ok(
    logs.some((l) => /udevadm: Failed to create sd-device monitor/.test(l)),
    "the child's stderr is logged",
  )

  // The same through the watcher in auto mode on this machine's /sys: it ends up polling.
  const root = tempDir(t)
  const changes: BusChange[] = []
  const w = new ChangeWatcher({ mode: 'auto', root: '/sys', access: { read: async () => 'x', list: async () => [] }, pollMs: 20, udevadm: cmd })
  t.teardown(() => w.close())
  w.subscribe((c) => void changes.push(c))
  t.equal(w.activeMode, 'udev', 'auto picks udev for /sys when udevadm exists')
  await until('fallback', () => w.activeMode === 'poll')
  t.pass(`fell back to polling (${root} unused)`)
})

t.test('watcher in udev mode: each uevent is a change; a restart is one extra change', async (t) => {
  const dir = tempDir(t)
  const cmd = fakeUdevadm(dir, `printf 'KERNEL - the kernel uevent\\n\\nKERNEL[1.0] change   /devices/ap (ap)\\nACTION=change\\n\\n'\nsleep 0.1\nexit 0`)
  const changes: BusChange[] = []
  const w = new ChangeWatcher({ mode: 'udev', root: '/whatever', access: { read: async () => 'x', list: async () => [] }, pollMs: 1000, udevadm: cmd })
  t.teardown(() => w.close())
  const stop = w.subscribe((c) => void changes.push(c))
  await until('two runs', () => changes.length >= 3, 10_000)
  const change = { source: 'uevent', summary: 'change /devices/ap', uevent: { action: 'change', devpath: '/devices/ap', env: { ACTION: 'change' } } }
  t.same(
    changes.slice(0, 3),
    [change, { source: 'uevent', summary: 'udev monitor restarted: events may have been missed' }, change],
    'the uevent itself travels with the change (an agent forwards it)',
  )
  stop()
  t.equal(w.activeMode, undefined)
})

t.test('udevadm is looked up on PATH (auto mode decides by it)', async (t) => {
  const dir = tempDir(t)
  const fake = fakeUdevadm(dir, 'exit 0')
  t.equal(findExecutable('udevadm', `/nonexistent:${dir}`), fake, 'found in the second PATH entry')
  t.equal(findExecutable('udevadm', '/nonexistent'), undefined)
  fs.chmodSync(fake, 0o644)
  t.equal(findExecutable('udevadm', dir), undefined, 'not executable: not found')
  t.equal(findExecutable(dir), undefined, 'a directory is no program')
})
