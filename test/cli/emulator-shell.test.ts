import t from 'tap'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { PassThrough, Writable } from 'node:stream'
import { createHost } from '../../src/emulator/host.js'
import type { EmulatedHostApi, HardwareProfile } from '../../src/emulator/api.js'
import { MAX_LINE_BYTES, createShellSession, handleShellLine, runShell, type ShellReply, type ShellSession } from '../../src/cli/emulator-shell.js'
import { run } from '../../src/cli/main.js'
import { projectRoot } from '../../src/paths.js'

const MATRIX = '/sys/devices/vfio_ap/matrix'
const CREATE = `${MATRIX}/mdev_supported_types/vfio_ap-passthrough/create`
const APMASK = '/sys/bus/ap/apmask'
const M1 = '11111111-2222-3333-4444-555555555555'
const ONES = `0x${'f'.repeat(64)}\n`

function session(): ShellSession {
  return createShellSession(createHost({ profile: 'spec-fixture' }))
}

/** One line through the protocol; a command line must get a reply. */
function sh(s: ShellSession, line: string): ShellReply {
  const r = handleShellLine(s, line)
  if (r === undefined) throw new Error(`no reply to ${JSON.stringify(line)}`)
  return r
}

function ok(t: Tst, r: ShellReply, what: string): Record<string, unknown> {
  t.equal(r.ok, true, `${what}: ok (got ${JSON.stringify(r).slice(0, 200)})`)
  return r as Record<string, unknown>
}

function errno(t: Tst, r: ShellReply, expected: string, what: string): void {
  t.match(r, { ok: false, errno: expected, message: String }, what)
}

/** A tap subtest (tap's overloads make the type awkward to name directly). */
type Tst = Parameters<Parameters<typeof t.test>[0]>[0]

const json = (o: unknown): string => JSON.stringify(o)

t.test('blank lines and # comments get no answer', async (t) => {
  const s = session()
  for (const line of ['', '   ', '\t', '\r', '# a comment', '   # indented comment']) {
    t.equal(handleShellLine(s, line), undefined, JSON.stringify(line))
  }
})

t.test('read: the attribute text exactly, plain and JSON (T-01)', async (t) => {
  const s = session()
  t.same(sh(s, `read ${APMASK}`), { ok: true, value: ONES })
  t.same(sh(s, json({ op: 'read', path: APMASK })), { ok: true, value: ONES })
  t.same(sh(s, `read ${APMASK}\r`), { ok: true, value: ONES }, 'a CRLF line')
  errno(t, sh(s, 'read /sys/bus/ap/no-such-attribute'), 'ENOENT', 'missing attribute: the host errno')
})

t.test('write: plain appends a newline like echo, JSON writes exactly (B-21, T-04, T-08)', async (t) => {
  const s = session()
  ok(t, sh(s, `write ${APMASK} 0x41`), 'plain 0x41')
  t.same(sh(s, `read ${APMASK}`), { ok: true, value: `0x41${'0'.repeat(62)}\n` }, 'T-04')
  // B-21: two newlines are EINVAL in absolute mode, so this only fails if the value is passed untouched.
  errno(t, sh(s, json({ op: 'write', path: APMASK, value: '0xff\n\n' })), 'EINVAL', 'JSON value is not altered')
  ok(t, sh(s, json({ op: 'write', path: APMASK, value: '0x8' })), 'JSON value without a newline')
  t.same(sh(s, `read ${APMASK}`), { ok: true, value: `0x8${'0'.repeat(63)}\n` })
  errno(t, sh(s, `write ${APMASK} +1, +2`), 'EINVAL', 'T-08: the space is part of the value')
  errno(t, sh(s, `write ${APMASK}  +1`), 'EINVAL', 'only one separating space: the second is data')
  ok(t, sh(s, `write ${APMASK}`), 'write PATH alone is echo > PATH')
  t.same(sh(s, `read ${APMASK}`), { ok: true, value: `0x${'0'.repeat(64)}\n` }, 'B-21: an empty line clears the mask')
  ok(t, sh(s, `write ${APMASK} `), 'write PATH + space: empty value too')
})

t.test('write: the exact bytes that reach host.write', async (t) => {
  const real = createHost({ profile: 'spec-fixture' })
  const written: string[] = []
  const recording = new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === 'write') return (p: string, v: string) => (written.push(v), target.write(p, v))
      return Reflect.get(target, prop, receiver)
    },
  }) as EmulatedHostApi
  const s = createShellSession(recording)
  const cfg = '/sys/bus/ap/config_time'
  sh(s, `write ${cfg} 60`)
  sh(s, `write ${cfg}  6 0 `)
  sh(s, `write ${cfg}`)
  sh(s, `write ${cfg} `)
  sh(s, json({ op: 'write', path: cfg, value: '45' }))
  sh(s, json({ op: 'write', path: cfg, value: ' 45\n\n' }))
  t.same(written, ['60\n', ' 6 0 \n', '\n', '\n', '45', ' 45\n\n'])
})

t.test('ls and readlink (T-02, T-03)', async (t) => {
  const s = session()
  const r = ok(t, sh(s, 'ls /sys/bus/ap/devices'), 'ls')
  const entries = r.entries as string[]
  t.equal(entries.length, 15, 'T-02: 3 cards and 12 queues')
  t.same(entries, [...entries].sort(), 'sorted')
  t.ok(entries.includes('card05') && entries.includes('07.00ff'))
  t.same(sh(s, json({ op: 'ls', path: '/sys/bus/ap/devices' })), r, 'JSON form gives the same')
  const link = ok(t, sh(s, 'readlink /sys/bus/ap/devices/05.0004/driver'), 'readlink')
  t.match(link.target, /cex4queue$/)
  ok(t, sh(s, `write ${APMASK} -5,-6`), 'T-03')
  t.match(ok(t, sh(s, json({ op: 'readlink', path: '/sys/bus/ap/devices/05.0004/driver' })), 'readlink JSON').target, /vfio_ap$/)
  t.match(ok(t, sh(s, 'readlink /sys/bus/ap/devices/card05/driver'), 'card stays').target, /cex4card$/)
  errno(t, sh(s, 'ls /sys/bus/ap/nothing-here'), 'ENOENT', 'ls of a missing directory')
})

t.test('host errnos pass through (T-16, T-23) and kernel log lines come with events (T-12)', async (t) => {
  const s = session()
  ok(t, sh(s, `write ${APMASK} -5`), 'give adapter 5 to vfio_ap')
  ok(t, sh(s, `write ${CREATE} ${M1}`), 'create')
  errno(t, sh(s, `write ${CREATE} ${M1}`), 'EEXIST', 'T-16')
  errno(t, sh(s, `write ${MATRIX}/${M1}/assign_adapter 256`), 'ENODEV', 'T-23')
  ok(t, sh(s, `write ${MATRIX}/${M1}/assign_adapter 5`), 'assign adapter')
  ok(t, sh(s, `write ${MATRIX}/${M1}/assign_domain 4`), 'assign domain')
  t.same(sh(s, `read ${MATRIX}/${M1}/matrix`), { ok: true, value: '05.0004\n' }, 'T-18')
  sh(s, json({ op: 'events' }))
  errno(t, sh(s, `write ${APMASK} +5`), 'EBUSY', 'T-12')
  const ev = ok(t, sh(s, json({ op: 'events' })), 'events').events as { kind: string; message?: string }[]
  t.ok(
    ev.some((e) => e.kind === 'log' && /Userspace may not re-assign queue 05\.0004 already assigned to/.test(e.message ?? '')),
    'T-12: the kernel log line is among the events',
  )
})

t.test('events: each call returns only what is new', async (t) => {
  const s = session()
  const first = ok(t, sh(s, json({ op: 'events' })), 'first').events as { seq: number }[]
  t.ok(first.length > 0, 'the first call returns the boot events')
  const again = ok(t, sh(s, json({ op: 'events' })), 'again').events as unknown[]
  t.same(again, [], 'nothing happened since')
  ok(t, sh(s, `write ${APMASK} -7`), 'mask change')
  const next = ok(t, sh(s, json({ op: 'events' })), 'next').events as { seq: number }[]
  t.ok(next.length > 0, 'the mask change emitted events')
  const last = first[first.length - 1]!.seq
  t.ok(
    next.every((e) => e.seq > last),
    'all newer than the previous call',
  )
  errno(t, sh(s, json({ op: 'events', since: 0 })), 'EINVAL', 'events takes no fields')
})

t.test('guest-open, aqic, guest-close (V-25, V-27, V-40)', async (t) => {
  const s = session()
  ok(t, sh(s, `write ${APMASK} -5`), 'mask')
  ok(t, sh(s, `write ${CREATE} ${M1}`), 'create')
  ok(t, sh(s, `write ${MATRIX}/${M1}/assign_adapter 5`), 'assign adapter')
  ok(t, sh(s, `write ${MATRIX}/${M1}/assign_domain 4`), 'assign domain')
  errno(t, sh(s, json({ op: 'guest-close', uuid: M1 })), 'ENODEV', 'close before open')
  ok(t, sh(s, json({ op: 'guest-open', uuid: M1, guest: 'vm1' })), 'open')
  errno(t, sh(s, json({ op: 'guest-open', uuid: M1, guest: 'vm2' })), 'EBUSY', 'already open')
  errno(t, sh(s, json({ op: 'guest-open', uuid: M1, guest: '' })), 'EINVAL', 'no KVM (V-25)')
  t.same(sh(s, `read /sys/bus/ap/devices/05.0004/status`), { ok: true, value: 'in use\n' }, 'V-25: status in use')
  t.same(sh(s, json({ op: 'aqic', uuid: M1, apqn: '05.0004', nib: 4096 })), { ok: true, rc: 0 }, 'AQIC enable on a linked queue')
  t.same(sh(s, json({ op: 'aqic', uuid: M1, apqn: '06.0004', nib: 4096 })), { ok: true, rc: 1 }, 'V-40: not linked -> 01')
  ok(t, sh(s, json({ op: 'guest-close', uuid: M1 })), 'close')
  errno(t, sh(s, json({ op: 'guest-open', uuid: '99999999-2222-3333-4444-555555555555', guest: 'vm1' })), 'ENODEV', 'unknown mdev')
})

t.test('requests, stats and virtual time (B-17, serviceMs)', async (t) => {
  const s = session()
  const t0 = ok(t, sh(s, json({ op: 'now' })), 'now').now as number
  t.same(sh(s, json({ op: 'requests', apqn: '05.0004', count: 3 })), { ok: true, accepted: 3 })
  t.match(sh(s, json({ op: 'stats', apqn: '05.0004' })), { ok: true, stats: { submitted: 3, completed: 0 } }, 'nothing completes without advance')
  t.same(sh(s, json({ op: 'now' })), { ok: true, now: t0 }, 'time does not move by itself')
  t.same(sh(s, json({ op: 'advance', ms: 1000 })), { ok: true, now: t0 + 1000 })
  t.match(sh(s, json({ op: 'stats', apqn: '05.0004' })), { ok: true, stats: { submitted: 3, completed: 3, flushed: 0 } })
  t.same(sh(s, json({ op: 'advance', ms: 0 })), { ok: true, now: t0 + 1000 }, 'advance 0 is allowed')
  t.match(sh(s, json({ op: 'stats', apqn: '06.00AB' })), { ok: true, stats: { submitted: 0 } }, 'an APQN in upper case is accepted')
  errno(t, sh(s, json({ op: 'stats', apqn: '12.0000' })), 'ENOENT', 'unknown queue')
})

t.test('hw and scan: config off with and without notify (B-40, B-43)', async (t) => {
  const s = session()
  const scans = (): number => Number((ok(t, sh(s, 'read /sys/bus/ap/scans'), 'scans').value as string).trim())
  const before = scans()
  ok(t, sh(s, json({ op: 'hw', action: 'config-off', apid: 5, notify: false })), 'config-off without notify')
  t.equal(scans(), before, 'no scan without a notification')
  ok(t, sh(s, json({ op: 'scan' })), 'scan')
  t.equal(scans(), before + 1, 'one scan')
  t.same(sh(s, 'read /sys/devices/ap/card05/05.0004/config'), { ok: true, value: '0\n' }, 'the queue follows the scan (B-4)')
  ok(t, sh(s, json({ op: 'hw', action: 'config-on', apid: '0x05' })), 'config-on, id as a hex string, notify by default')
  t.equal(scans(), before + 2, 'notify scans at once (B-43)')
  t.same(sh(s, 'read /sys/devices/ap/card05/05.0004/config'), { ok: true, value: '1\n' })
  ok(t, sh(s, json({ op: 'hw', action: 'add-domain', apqi: 5, control: false })), 'add-domain')
  t.ok((ok(t, sh(s, 'ls /sys/bus/ap/devices'), 'ls').entries as string[]).includes('05.0005'), 'the new domain has queues')
  ok(t, sh(s, json({ op: 'hw', action: 'remove-adapter', apid: 7 })), 'remove-adapter')
  t.notOk((ok(t, sh(s, 'ls /sys/bus/ap/devices'), 'ls').entries as string[]).includes('card07'), 'card07 is gone')
  ok(t, sh(s, json({ op: 'hw', action: 'add-adapter', apid: 7, rawType: 14, mode: 'cca' })), 'add-adapter')
  t.ok((ok(t, sh(s, 'ls /sys/bus/ap/devices'), 'ls').entries as string[]).includes('card07'), 'card07 is back')
  ok(t, sh(s, json({ op: 'hw', action: 'set-mode', apid: 7, mode: 'ep11' })), 'set-mode')
  ok(t, sh(s, json({ op: 'hw', action: 'checkstop', apid: 6, apqi: 4 })), 'checkstop one queue')
  t.same(sh(s, 'read /sys/devices/ap/card06/06.0004/chkstop'), { ok: true, value: '1\n' })
  ok(t, sh(s, json({ op: 'hw', action: 'checkstop-clear', apid: 6, apqi: 4 })), 'checkstop-clear')
})

t.test('every class of bad line is EINVAL and the session goes on', async (t) => {
  const s = session()
  const bad: [string, string][] = [
    ['{"op":"read","path":', 'bad JSON'],
    ['{not json}', 'bad JSON'],
    ['["read","/sys"]', 'a JSON array'],
    ['{}', 'no op'],
    [json({ op: 42 }), 'op not a string'],
    [json({ op: 'frobnicate' }), 'unknown op'],
    [json({ op: 'read' }), 'missing path'],
    [json({ op: 'read', path: 7 }), 'path not a string'],
    [json({ op: 'read', path: '' }), 'empty path'],
    [json({ op: 'read', path: 'sys/bus/ap/apmask' }), 'relative path'],
    [json({ op: 'read', path: APMASK, extra: 1 }), 'unknown field'],
    [json({ op: 'write', path: APMASK }), 'write without value'],
    [json({ op: 'write', path: APMASK, value: 5 }), 'value not a string'],
    [json({ op: 'requests', apqn: '05.0004', count: 0 }), 'count 0'],
    [json({ op: 'requests', apqn: '05.0004', count: 1.5 }), 'count not an integer'],
    [json({ op: 'requests', apqn: '05.0004', count: '3' }), 'count as a string'],
    [json({ op: 'requests', apqn: '05.0004', count: 1_000_001 }), 'count too large'],
    [json({ op: 'requests', apqn: '5.4', count: 1 }), 'malformed APQN'],
    [json({ op: 'requests', count: 1 }), 'missing apqn'],
    [json({ op: 'advance', ms: -1 }), 'negative ms'],
    [json({ op: 'advance', ms: 3_600_001 }), 'ms above one hour'],
    [json({ op: 'advance', ms: 0.5 }), 'fractional ms'],
    [json({ op: 'advance' }), 'missing ms'],
    [json({ op: 'now', ms: 1 }), 'now takes no fields'],
    [json({ op: 'scan', force: true }), 'scan takes no fields'],
    [json({ op: 'guest-open', uuid: M1 }), 'missing guest'],
    [json({ op: 'guest-open', uuid: '', guest: 'vm1' }), 'empty uuid'],
    [json({ op: 'guest-open', uuid: 'x'.repeat(300), guest: 'vm1' }), 'uuid too long'],
    [json({ op: 'aqic', uuid: M1, apqn: '05.0004', nib: -1 }), 'negative nib'],
    [json({ op: 'hw', apid: 5 }), 'hw without action'],
    [json({ op: 'hw', action: 'explode', apid: 5 }), 'unknown hw action'],
    [json({ op: 'hw', action: 'config-off' }), 'hw config-off without apid'],
    [json({ op: 'hw', action: 'config-off', apid: 256 }), 'apid above 255'],
    [json({ op: 'hw', action: 'config-off', apid: '0x1g' }), 'bad id string'],
    [json({ op: 'hw', action: 'config-off', apid: 5, notify: 'yes' }), 'notify not a boolean'],
    [json({ op: 'hw', action: 'remove-adapter', apid: 5, apqi: 4 }), 'field of another action'],
    [json({ op: 'hw', action: 'set-mode', apid: 5 }), 'set-mode without mode'],
    [json({ op: 'hw', action: 'set-mode', apid: 5, mode: 'CCA' }), 'unknown mode'],
    [json({ op: 'hw', action: 'add-domain', apqi: 4, control: 1 }), 'control not a boolean'],
    ['frobnicate /sys', 'unknown plain verb'],
    ['READ /sys/bus/ap/apmask', 'verbs are lowercase'],
    ['read', 'read without a path'],
    ['read /sys/bus/ap/apmask /sys/bus/ap/aqmask', 'read with two paths'],
    ['ls  /sys/bus/ap', 'two spaces: empty path'],
    ['write', 'write without a path'],
    ['guest-open x y', 'controls are JSON only'],
    ['x'.repeat(MAX_LINE_BYTES + 1), 'line too long'],
  ]
  for (const [line, why] of bad) errno(t, sh(s, line), 'EINVAL', why)
  t.same(sh(s, `read ${APMASK}`), { ok: true, value: ONES }, 'still answering, and nothing changed')
  t.same(
    sh(s, json({ op: 'stats', apqn: '05.0004' })),
    { ok: true, stats: { submitted: 0, completed: 0, flushed: 0, rejected: 0 } },
    'no request was submitted',
  )
  ok(t, sh(s, `write ${APMASK} 0x${'f'.repeat(60)}`), 'a line just under the limit is fine')
})

t.test('an unexpected exception becomes EIO', async (t) => {
  const real = createHost({ profile: 'spec-fixture' })
  const broken = new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === 'scan')
        return () => {
          throw new TypeError('boom')
        }
      return Reflect.get(target, prop, receiver)
    },
  }) as EmulatedHostApi
  const s = createShellSession(broken)
  t.same(sh(s, json({ op: 'scan' })), { ok: false, errno: 'EIO', message: 'boom' })
  t.same(sh(s, json({ op: 'now' })), { ok: true, now: real.now() }, 'the session goes on')
})

/** Feeds `chunks` through runShell and returns the output lines. */
async function streamed(chunks: (string | Buffer)[]): Promise<string[]> {
  const input = new PassThrough()
  const output = new PassThrough()
  let out = ''
  output.on('data', (d: Buffer) => (out += d.toString('utf8')))
  const done = runShell(session(), input, output)
  for (const c of chunks) input.write(c)
  input.end()
  t.equal(await done, 'eof')
  return out.split('\n').slice(0, -1)
}

t.test('runShell: framing over a stream', async (t) => {
  const lines = await streamed([
    '# comment\n\nread /sys/bus/ap/ap',
    'mask\r\n{"op":"now"}\n',
    'x'.repeat(40_000),
    `${'x'.repeat(40_000)}\nread /sys/bus/ap/a\rpmask\n`,
    `write ${APMASK} 0x`, // the last line has no newline
  ])
  t.equal(lines.length, 5, 'one answer per command line, none for the comment and the blank line')
  t.same(JSON.parse(lines[0]!), { ok: true, value: ONES }, 'a line split across chunks, CRLF')
  t.match(JSON.parse(lines[1]!), { ok: true, now: Number })
  t.match(JSON.parse(lines[2]!), { ok: false, errno: 'EINVAL', message: /longer than 65536 bytes/ }, 'an 80,000-byte line')
  t.match(JSON.parse(lines[3]!), { ok: false }, 'a lone \\r is data, not a line break')
  t.same(JSON.parse(lines[4]!), { ok: true }, 'the unterminated last line is answered')
})

t.test('runShell: a reader that goes away (EPIPE) ends the shell even while input stays open', async (t) => {
  const input = new PassThrough()
  const output = new Writable({
    write(_chunk, _enc, cb) {
      cb(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }))
    },
  })
  const done = runShell(session(), input, output)
  input.write(`read ${APMASK}\n`)
  t.equal(await done, 'output-closed')
  t.ok(input.destroyed, 'input is no longer read')
})

/** An in-memory CliIo that records stdout and stderr. */
function memIo(stdinText = ''): { io: Parameters<typeof run>[1] & object; out: () => string; err: () => string } {
  const stdin = new PassThrough()
  stdin.end(stdinText)
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  let o = ''
  let e = ''
  stdout.on('data', (d: Buffer) => (o += d.toString()))
  stderr.on('data', (d: Buffer) => (e += d.toString()))
  return { io: { stdin, stdout, stderr, env: {} }, out: () => o, err: () => e }
}

t.test('run(): help, version, and usage errors exit 2 with one clear line', async (t) => {
  const pkg = JSON.parse(fs.readFileSync(path.join(projectRoot, 'package.json'), 'utf8')) as { version: string }
  let m = memIo()
  t.equal(await run(['--version'], m.io), 0)
  t.equal(m.out(), `apmatrix ${pkg.version}\n`)
  m = memIo()
  t.equal(await run(['--help'], m.io), 0)
  t.match(m.out(), /Usage: apmatrix <command>[\s\S]*emulator shell/)
  m = memIo()
  t.equal(await run(['emulator', 'shell', '--help'], m.io), 0)
  t.match(m.out(), /Usage: apmatrix emulator shell[\s\S]*virtual time/i)
  m = memIo()
  t.equal(await run(['help', 'emulator', 'shell'], m.io), 0)
  t.match(m.out(), /Usage: apmatrix emulator shell/)
  const usage: [string[], RegExp][] = [
    [[], /Usage: apmatrix/],
    [['bogus'], /unknown command 'bogus'/],
    [['--bogus'], /unknown option '--bogus'/],
    [['emulator'], /emulator: missing subcommand \(one of: shell, serve\)/],
    [['emulator', 'shel'], /emulator: unknown subcommand 'shel'/],
    [['emulator', 'shell', '--bogus'], /Unknown option '--bogus'/],
    [['emulator', 'shell', 'extra'], /positional/i],
    [['emulator', 'shell', '--profile'], /--profile/],
    [['emulator', 'shell', '--kernel', '7.0'], /--kernel: unknown kernel profile '7.0'/],
    [['emulator', 'shell', '--profile', 'no-such-profile'], /--profile: .*no-such-profile/],
  ]
  for (const [argv, msg] of usage) {
    m = memIo()
    t.equal(await run(argv, m.io), 2, `exit 2: ${argv.join(' ')}`)
    t.match(m.err(), msg, `message: ${argv.join(' ')}`)
    t.notMatch(m.err(), /\n\s+at /, 'no stack trace')
    t.equal(m.out(), '', 'nothing on stdout')
  }
})

t.test('run(): emulator shell in-process answers stdin and exits 0 at EOF', async (t) => {
  const m = memIo(`read ${APMASK}\n{"op":"bad"}\n`)
  t.equal(await run(['emulator', 'shell', '--profile', 'spec-fixture', '--kernel', 'legacy-5.x'], m.io), 0)
  const lines = m
    .out()
    .split('\n')
    .slice(0, -1)
    .map((l) => JSON.parse(l) as ShellReply)
  t.same(lines, [
    { ok: true, value: ONES },
    { ok: false, errno: 'EINVAL', message: "unknown op 'bad'" },
  ])
})

// ---- the real command, as a process ----

const BIN = path.join(projectRoot, 'bin', 'apmatrix.mjs')
const DIST_MAIN = path.join(projectRoot, 'dist', 'src', 'cli', 'main.js')

interface ProcResult {
  code: number | null
  stdout: string
  stderr: string
}

function runBin(args: string[], stdin: string): Promise<ProcResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], { cwd: projectRoot, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    p.on('error', reject)
    p.on('close', (code) => resolve({ code, stdout, stderr }))
    p.stdin.end(stdin)
  })
}

t.test('process: the built command (node bin/apmatrix.mjs)', async (t) => {
  if (!fs.existsSync(DIST_MAIN)) {
    t.fail(`${path.relative(projectRoot, DIST_MAIN)} is missing: run \`npm run build\` first (npm test builds before testing)`)
    return
  }

  t.test('a scripted T-03 session: one JSON line per command line, in order', async (t) => {
    const commands = [
      `write ${APMASK} -5,-6`,
      'readlink /sys/bus/ap/devices/05.0004/driver',
      'read /sys/bus/ap/devices/05.0004/status',
      `write ${CREATE} ${M1}`,
      `write ${MATRIX}/${M1}/assign_adapter 5`,
      `write ${MATRIX}/${M1}/assign_domain 4`,
      `write ${MATRIX}/${M1}/assign_domain 0x47`,
      `read ${MATRIX}/${M1}/matrix`,
      json({ op: 'guest-open', uuid: M1, guest: 'vm1' }),
      `read ${MATRIX}/${M1}/guest_matrix`,
      'this is not a command',
      json({ op: 'advance', ms: 30_000 }),
      json({ op: 'events' }),
    ]
    const script = `${['# T-03 with an mdev', ...commands.flatMap((c, i) => (i === 4 ? ['', c] : [c]))].join('\n')}\n`
    const r = await runBin(['emulator', 'shell', '--profile', 'spec-fixture'], script)
    t.equal(r.code, 0, `exit 0 (stderr: ${r.stderr})`)
    t.equal(r.stderr, '', 'nothing on stderr')
    const lines = r.stdout.split('\n')
    t.equal(lines.pop(), '', 'output ends with a newline')
    t.equal(lines.length, commands.length, 'exactly one line per command line')
    const replies = lines.map((l) => JSON.parse(l) as Record<string, unknown>)
    t.same(replies[0], { ok: true })
    t.match(replies[1], { ok: true, target: /vfio_ap$/ }, 'T-03: reprobed to vfio_ap')
    t.same(replies[2], { ok: true, value: 'unassigned\n' }, 'T-03: status unassigned')
    for (const i of [3, 4, 5, 6]) t.same(replies[i], { ok: true }, commands[i]!)
    t.same(replies[7], { ok: true, value: '05.0004\n05.0047\n' }, 'matrix')
    t.same(replies[8], { ok: true }, 'guest-open')
    t.same(replies[9], { ok: true, value: '05.0004\n05.0047\n' }, 'guest_matrix')
    t.match(replies[10], { ok: false, errno: 'EINVAL' })
    t.same(replies[11], { ok: true, now: 30_000 }, 'virtual time moved by exactly 30 s')
    t.match(replies[12], { ok: true, events: Array })
    t.ok((replies[12]!.events as unknown[]).length > 0, 'events were recorded')
  })

  t.test('--profile PATH: a JSON profile file', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-shell-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const profile: HardwareProfile = {
      name: 'one-card',
      qci: { apxa: true, qact: true, apsc: true, rc8a: true, apsb: false, na: 255, nd: 255 },
      adapters: [{ apid: 0x0a, rawType: 14, mode: 'ep11' }],
      domains: [1, 2],
      controlDomains: [1, 2],
    }
    const file = path.join(dir, 'one-card.json')
    fs.writeFileSync(file, JSON.stringify(profile))
    const r = await runBin(['emulator', 'shell', '--profile', file], 'ls /sys/bus/ap/devices\n')
    t.equal(r.code, 0, r.stderr)
    t.same(JSON.parse(r.stdout), { ok: true, entries: ['0a.0001', '0a.0002', 'card0a'] })

    const bad = path.join(dir, 'bad.json')
    fs.writeFileSync(bad, '{"name": "broken", ')
    const b = await runBin(['emulator', 'shell', '--profile', bad], '')
    t.equal(b.code, 2, 'a bad profile file is a usage error')
    t.match(b.stderr, /^apmatrix: --profile: .+\n/)
    t.notMatch(b.stderr, /\n\s+at /, 'no stack trace')
    t.equal(b.stdout, '')

    const missing = await runBin(['emulator', 'shell', '--profile', path.join(dir, 'nope.json')], '')
    t.equal(missing.code, 2, 'a missing profile file is a usage error')
    t.match(missing.stderr, /--profile/)
  })

  t.test('bad options exit 2', async (t) => {
    for (const args of [['emulator', 'shell', '--frob'], ['bogus'], ['emulator', 'shell', '--kernel', 'x']]) {
      const r = await runBin(args, '')
      t.equal(r.code, 2, args.join(' '))
      t.match(r.stderr, /^apmatrix: /)
      t.notMatch(r.stderr, /\n\s+at /)
    }
    const v = await runBin(['--version'], '')
    t.equal(v.code, 0)
    t.match(v.stdout, /^apmatrix \d+\.\d+\.\d+\n$/)
  })
})

t.test('workload op: a steady workload runs while virtual time advances', async (t) => {
  const { createShellSession, handleShellLine } = await import('../../src/cli/emulator-shell.js')
  const { createHost } = await import('../../src/emulator/host.js')
  const session = createShellSession(createHost({ profile: 'spec-fixture' }))
  t.same(handleShellLine(session, '{"op":"workload","apqn":"05.0004","perSecond":100}'), { ok: true })
  handleShellLine(session, '{"op":"advance","ms":1000}')
  const stats = handleShellLine(session, '{"op":"stats","apqn":"05.0004"}') as { ok: true; stats: { submitted: number; completed: number } }
  t.equal(stats.stats.submitted, 100, 'one request every 10 ms for one second')
  t.ok(stats.stats.completed >= 99)
  t.same(handleShellLine(session, '{"op":"workload","apqn":"05.0004","perSecond":0}'), { ok: true })
  t.match(handleShellLine(session, '{"op":"workload","apqn":"05.0004","perSecond":-1}'), { ok: false, errno: 'EINVAL' })
  t.match(handleShellLine(session, '{"op":"workload","apqn":"09.0004","perSecond":5}'), { ok: false, errno: 'ENOENT' })
})
