/**
 * The shell through the FUSE mount of `apmatrix emulator serve --mount`, case by case against the
 * emulator's own answers: every operation runs with real tools (bash, cat, ls, readlink, find, dd) on the
 * mount, and the same operation runs on a twin host (same profile, same operations, same order) through
 * the emulator shell's line protocol (src/cli/emulator-shell.ts). Exit codes and messages are the C
 * library's own (strerror via perl), so `echo 5 > assign_adapter` must print "Address already in use"
 * exactly where the emulator answers EADDRINUSE. The mount's writes must also be in the server's write
 * log, and both faces must drive one host, also after a Reboot.
 */
import { spawnSync } from 'node:child_process'
import t, { type Test } from 'tap'
import { type ShellReply, type ShellSession, createShellSession, handleShellLine } from '../../../src/cli/emulator-shell.js'
import { createHost } from '../../../src/emulator/host.js'
import { fuseMissing, requireOrSkip } from '../../helpers/required-tools.js'
import { strerror } from '../../helpers/strerror.js'
import { M1, M2 } from '../helpers.js'
import { type MountedEmulator, startMounted } from './mounted-emulator.js'

const TYPE = 'devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough'
const PAGE = 4096

interface Ran {
  status: number | null
  stdout: string
  stderr: string
}

/** Runs a bash script in the mount directory; `$1`, `$2`, ... are `args` (no quoting problems). */
function bash(m: MountedEmulator, script: string, ...args: string[]): Ran {
  const r = spawnSync('bash', ['-c', script, 'bash', ...args], { cwd: m.dir, encoding: 'utf8', timeout: 15_000, env: { ...process.env, LC_ALL: 'C' } })
  if (r.error) throw r.error
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** The twin's answer to one line of the emulator shell protocol. */
function twinSays(twin: ShellSession, op: Record<string, unknown>): ShellReply {
  const r = handleShellLine(twin, JSON.stringify(op))
  if (!r) throw new Error('no reply')
  return r
}

/** The twin's answer to a command that must succeed (reads of the tree), as its result fields. */
function twinOk(twin: ShellSession, op: Record<string, unknown>): Record<string, unknown> {
  const r = twinSays(twin, op)
  if (!r.ok) throw new Error(`twin: ${JSON.stringify(op)}: ${r.errno} ${r.message}`)
  return r
}

/** Checks a shell run against the twin's reply: exit 0 and quiet on success, else exit 1 and the errno's message. */
function sameOutcome(t: Test, what: string, ran: Ran, twin: ShellReply, okStdout?: string): void {
  if (twin.ok) {
    t.same([ran.status, ran.stderr], [0, ''], `${what}: succeeds like the emulator`)
    if (okStdout !== undefined) t.equal(ran.stdout, okStdout, `${what}: same text`)
  } else {
    t.equal(ran.status, 1, `${what}: exits 1 where the emulator answers ${twin.errno}`)
    t.match(ran.stderr, strerror(twin.errno), `${what}: prints "${strerror(twin.errno)}"`)
  }
}

requireOrSkip(t, 'the shell through the FUSE mount answers what the emulator answers', fuseMissing(), async (t) => {
  const m = await startMounted(t)
  const twin = createShellSession(createHost({ profile: 'spec-fixture' }))

  const cat = (rel: string) => {
    const reply = twinSays(twin, { op: 'read', path: `/sys/${rel}` })
    sameOutcome(t, `cat ${rel}`, bash(m, 'cat "$1"', rel), reply, reply.ok ? (reply.value as string) : undefined)
  }
  /**
   * Runs a shell write and replays, on the twin, exactly the store calls it made (the server's write log:
   * how many write(2)s a value becomes is libc's business; each reaches the store with at most a page).
   * The twin must answer each store as the mount did, and the shell must report the first failure's
   * errno. A write refused at open (no store call) must be one the twin refuses with that errno.
   */
  const shellWrite = async (what: string, rel: string, bytes: string, script: string, ...args: string[]): Promise<Ran> => {
    const seq = (await m.client.writeLog(0)).lastSeq
    const ran = bash(m, script, ...args)
    const stores = (await m.client.writeLog(seq)).entries
    t.ok(
      stores.every((e) => e.origin === 'fuse' && e.fence === null && e.value.length <= PAGE),
      `${what}: ${stores.length} store call(s) of at most a page`,
    )
    if (stores.length === 0) {
      sameOutcome(t, what, ran, bytes === '' ? { ok: true } : twinSays(twin, { op: 'write', path: `/sys/${rel}`, value: bytes }))
      return ran
    }
    const answers = stores.map((e) => twinSays(twin, { op: 'write', path: e.path, value: e.value }))
    t.same(
      answers.map((a) => (a.ok ? 'ok' : a.errno)),
      stores.map((e) => e.errno ?? 'ok'),
      `${what}: the twin answers each store as the mount did`,
    )
    if (answers.every((a) => a.ok)) t.equal(stores.map((e) => e.value).join(''), bytes, `${what}: the stores got exactly the bytes written`)
    sameOutcome(t, what, ran, answers.find((a) => !a.ok) ?? { ok: true })
    return ran
  }
  const echo = (rel: string, value: string) =>
    shellWrite(`echo ${JSON.stringify(value.slice(0, 40))} > ${rel}`, rel, `${value}\n`, 'echo "$1" > "$2"', value, rel)
  const printf = (rel: string, value: string) =>
    shellWrite(`printf ${JSON.stringify(value.slice(0, 40))} > ${rel}`, rel, value, 'printf %s "$1" > "$2"', value, rel)

  t.test('cat: texts and errors', async (t) => {
    for (const rel of [
      'bus/ap/apmask',
      'bus/ap/aqmask',
      'bus/ap/bindings',
      'bus/ap/features',
      'bus/ap/ap_domain',
      'bus/ap/devices/card05/hwtype',
      'bus/ap/devices/card05/ap_functions',
      'bus/ap/devices/05.0004/online',
      'devices/ap/card06/06.00ab/reset',
      `${TYPE}/name`,
      `${TYPE}/available_instances`,
      'devices/vfio_ap/matrix/features',
    ])
      cat(rel)
    cat('bus/ap/drivers/vfio_ap/bind') // write-only: EACCES
    cat('bus/ap/nothing') // ENOENT
    const dir = bash(m, 'cat bus/ap')
    t.same([dir.status, dir.stderr.trim()], [1, `cat: bus/ap: ${strerror('EISDIR')}`], 'cat of a directory')
  })

  t.test('echo > attribute: the exit codes and messages of the kernel errnos, in scenario order (T-03, T-15..T-24)', async (t) => {
    await echo('bus/ap/apmask', '-5,-6')
    await echo('bus/ap/aqmask', '-4,-0x47')
    await echo('bus/ap/apmask', '0X41') // T-05 EINVAL
    await echo('bus/ap/apmask', '+1, +2') // T-08 EINVAL
    await echo(`${TYPE}/create`, M1)
    await printf(`${TYPE}/create`, M2) // 36 bytes without newline, as mdevctl writes it
    await echo(`${TYPE}/create`, M1) // T-16 EEXIST
    await echo(`${TYPE}/create`, M1.slice(0, 35)) // T-17 EINVAL
    await echo(`bus/mdev/devices/${M1}/assign_adapter`, '5')
    await echo(`bus/mdev/devices/${M1}/assign_domain`, '4')
    await echo(`devices/vfio_ap/matrix/${M2}/assign_adapter`, '5') // T-21: OK, no domain yet
    const inUse = await echo(`devices/vfio_ap/matrix/${M2}/assign_domain`, '4') // T-21: EADDRINUSE
    t.same([inUse.status, inUse.stderr.trim()], [1, `bash: line 1: echo: write error: ${strerror('EADDRINUSE')}`], 'the literal bash message')
    await echo(`devices/vfio_ap/matrix/${M2}/assign_adapter`, '256') // T-23 ENODEV
    await echo(`devices/vfio_ap/matrix/${M2}/assign_adapter`, '08') // T-24 EINVAL
    await echo(`devices/vfio_ap/matrix/${M2}/assign_adapter`, '0x07')
    await echo(`devices/vfio_ap/matrix/${M2}/assign_domain`, '0xab') // 07.00ab is the host's: EADDRNOTAVAIL
    await echo('bus/ap/bindings', 'x') // read-only: EACCES at open
    // A name that does not exist: the emulator's write answers ENOENT; the shell's `>` opens with O_CREAT,
    // which sysfs refuses with EACCES (its directories have no ->create). Without O_CREAT: ENOENT.
    const created = bash(m, 'echo x > bus/ap/no-such-attribute')
    t.same([created.status, created.stderr.trim()], [1, `bash: line 1: bus/ap/no-such-attribute: ${strerror('EACCES')}`], 'creating a file: EACCES')
    const nocreat = bash(m, 'echo x | dd of=bus/ap/no-such-attribute conv=nocreat status=none')
    t.same(
      [nocreat.status, nocreat.stderr.trim()],
      [1, `dd: failed to open 'bus/ap/no-such-attribute': ${strerror('ENOENT')}`],
      'opening it without O_CREAT: ENOENT',
    )
    t.match(twinSays(twin, { op: 'write', path: '/sys/bus/ap/no-such-attribute', value: 'x\n' }), { ok: false, errno: 'ENOENT' }, 'as the emulator answers')
    await echo('bus/ap/drivers/cex4queue/unbind', '05.0004') // B-31: not bound to cex4queue: ENODEV
    cat(`devices/vfio_ap/matrix/${M1}/matrix`)
    cat(`devices/vfio_ap/matrix/${M2}/matrix`)
    cat(`bus/ap/devices/05.0004/status`)
  })

  t.test('odd values: empty, a lone newline, no newline, longer than a page', async (t) => {
    const rel = `devices/vfio_ap/matrix/${M1}/assign_control_domain`
    const before = (await m.client.writeLog(0)).lastSeq
    const empty = bash(m, ': > "$1"', rel)
    t.same([empty.status, empty.stderr], [0, ''], '`: > attr` opens with O_TRUNC and writes nothing: fine')
    t.equal((await m.client.writeLog(0)).lastSeq, before, 'no store call at all for an empty write')
    const mask = bash(m, 'cat bus/ap/apmask').stdout
    const trunc = bash(m, 'truncate -s 0 bus/ap/apmask && perl -e \'open(my $f, "+<", $ARGV[0]) or die "$!"; truncate($f, 0) or die "$!"\' bus/ap/apmask')
    t.same([trunc.status, trunc.stderr], [0, ''], 'truncate(2) and ftruncate(2) of an attribute succeed')
    t.equal(bash(m, 'cat bus/ap/apmask').stdout, mask, 'and change nothing')
    t.equal((await m.client.writeLog(0)).lastSeq, before, 'no store call either')
    await echo(rel, '') // a lone newline: EINVAL (V-6)
    await printf(rel, '71') // no newline
    cat(`devices/vfio_ap/matrix/${M1}/control_domains`)
    await echo('bus/ap/apmask', 'f'.repeat(5000)) // more than a page of garbage: every store fails
    await echo('bus/ap/apmask', '-0-255') // (bits 0..255 cleared, so the next step shows)
    await echo('bus/ap/apmask', '+1-3')
    // A page of a bad mask and its newline: the first store fails (more than 64 digits), but libc still
    // writes the newline it buffered, and a lone newline is the all-zero mask (B-21). Same on a kernel.
    const seq0 = (await m.client.writeLog(0)).lastSeq
    await echo('bus/ap/apmask', `0x${'0'.repeat(PAGE - 3)}1`)
    t.same(
      (await m.client.writeLog(seq0)).entries.map((e) => [e.value.length, e.errno ?? 'ok']),
      [
        [PAGE, 'EINVAL'],
        [1, 'ok'],
      ],
      'a failed page, then the newline',
    )
    t.equal(bash(m, 'cat bus/ap/apmask').stdout, `0x${'0'.repeat(64)}\n`, 'and the mask is all zeros')
    cat('bus/ap/apmask')
    const long = `+1${','.repeat(PAGE - 2)}+2`
    const seq = (await m.client.writeLog(0)).lastSeq
    await echo('bus/ap/apmask', long) // two stores: the first page, then the rest
    const log = await m.client.writeLog(seq)
    t.same(
      log.entries.map((e) => [e.path, e.value.length, e.errno ?? 'ok', e.origin]),
      [
        ['/sys/bus/ap/apmask', PAGE, 'ok', 'fuse'],
        ['/sys/bus/ap/apmask', 3, 'ok', 'fuse'],
      ],
      'echo of 4099 bytes: two write(2)s, two stores (sysfs takes a page per write)',
    )
    cat('bus/ap/apmask')
    const small = bash(m, 'dd if=bus/ap/apmask bs=1 2>/dev/null; head -c 7 bus/ap/apmask')
    const text = twinOk(twin, { op: 'read', path: '/sys/bus/ap/apmask' })
    t.equal(small.stdout, `${text.value as string}${(text.value as string).slice(0, 7)}`, 'one byte at a time, and a short read')
  })

  t.test('ls, ls -a, ls -l (sysfs modes and sizes), readlink, find', async (t) => {
    for (const rel of [
      '',
      'bus',
      'bus/ap',
      'bus/ap/drivers/vfio_ap',
      'bus/mdev/devices',
      'class/mdev_bus',
      `devices/vfio_ap/matrix/${M1}`,
      TYPE,
      'devices/ap/card05/05.0047',
    ]) {
      const twinLs = twinOk(twin, { op: 'ls', path: `/sys/${rel}`.replace(/\/$/, '') })
      const ran = bash(m, 'ls -1 "$1"', rel || '.')
      t.equal(ran.stdout, (twinLs.entries as string[]).map((e) => `${e}\n`).join(''), `ls ${rel || '.'}`)
      t.equal(bash(m, 'ls -1a "$1"', rel || '.').stdout, ['.', '..', ...(twinLs.entries as string[])].map((e) => `${e}\n`).join(''), `ls -a ${rel || '.'}`)
    }
    const host = twin.host
    const want = (p: string): [string, string] => {
      const s = host.stat(p)
      if (s.type === 'dir') return ['drwxr-xr-x', '0']
      if (s.type === 'link') return ['lrwxrwxrwx', '0']
      return [s.readable && s.writable ? '-rw-r--r--' : s.readable ? '-r--r--r--' : '--w-------', '4096']
    }
    for (const rel of ['bus/ap', `devices/vfio_ap/matrix/${M1}`, 'bus/ap/devices/05.0004/', 'devices/vfio_ap/matrix']) {
      const lines = bash(m, 'ls -l "$1"', rel)
        .stdout.split('\n')
        .filter((l) => l !== '' && !l.startsWith('total'))
      const got = lines.map((l) => {
        const f = l.split(/\s+/)
        return [f[f[0]!.startsWith('l') ? f.length - 3 : f.length - 1]!, f[0]!, f[4]!]
      })
      const dir = `/sys/${rel}`.replace(/\/$/, '')
      t.same(
        got,
        host.list(dir).map((name) => [name, ...want(`${dir}/${name}`)]),
        `ls -l ${rel}: modes and sizes`,
      )
    }
    for (const rel of [
      'bus/ap/devices/05.0004',
      `bus/mdev/devices/${M1}`,
      `devices/vfio_ap/matrix/${M1}/mdev_type`,
      `${TYPE}/devices/${M2}`,
      'class/mdev_bus/matrix',
      'bus/ap/devices/06.0047/driver',
    ]) {
      const reply = twinOk(twin, { op: 'readlink', path: `/sys/${rel}` })
      t.equal(bash(m, 'readlink "$1"', rel).stdout, `${reply.target as string}\n`, `readlink ${rel}`)
    }
    t.equal(
      bash(m, 'readlink -f "$1"', `bus/mdev/devices/${M1}/mdev_type`).stdout,
      `${m.dir}/${TYPE}\n`,
      'readlink -f: the kernel resolves the chain inside the mount',
    )
    sameOutcome(t, 'readlink of an attribute', bash(m, 'readlink -v "$1"', 'bus/ap/apmask'), twinSays(twin, { op: 'readlink', path: '/sys/bus/ap/apmask' }))

    const walk = (dir: string, out: string[] = []): string[] => {
      for (const name of host.list(dir)) {
        const p = `${dir}/${name}`
        const s = host.stat(p)
        out.push(`${s.type === 'dir' ? 'd' : s.type === 'link' ? 'l' : 'f'} ${p.slice('/sys/'.length)}`)
        if (s.type === 'dir') walk(p, out)
      }
      return out
    }
    const roots = ['bus/mdev', 'bus/matrix', 'class', 'devices/vfio_ap', 'bus/ap/drivers']
    const found = bash(m, 'find "$@" -mindepth 1 -printf "%y %p\\n"', ...roots)
    t.equal(found.status, 0, `find exits 0${found.stderr ? `: ${found.stderr}` : ''}`)
    t.same(found.stdout.split('\n').filter(Boolean).sort(), roots.flatMap((r) => walk(`/sys/${r}`)).sort(), 'find sees the tree the emulator lists')
  })

  t.test("two faces, one host: gRPC sees the mount's writes and the mount gRPC's, also after a Reboot", async (t) => {
    t.equal(await m.client.read(`/sys/devices/vfio_ap/matrix/${M1}/matrix`), bash(m, 'cat "$1"', `devices/vfio_ap/matrix/${M1}/matrix`).stdout)
    await m.client.write('/sys/bus/ap/aqmask', '+0x47\n')
    t.equal(bash(m, 'cat bus/ap/aqmask').stdout, await m.client.read('/sys/bus/ap/aqmask'), 'a gRPC write shows in the mount')
    const log = await m.client.writeLog(0)
    t.ok(
      log.entries.length > 20 && log.entries.slice(0, -1).every((e) => e.origin === 'fuse' && e.fence === null),
      'every write through the mount is logged, unfenced, origin fuse',
    )
    t.equal(log.entries[log.entries.length - 1]!.origin, 'grpc')
    const info = await m.client.reboot()
    t.not(info.bootId, m.bootId, 'a new boot')
    t.equal(bash(m, 'cat bus/ap/apmask').stdout, `0x${'f'.repeat(64)}\n`, 'the mount shows the new boot (masks back to all ones)')
    t.equal(bash(m, 'ls bus/mdev/devices').stdout, '', 'no matrix device after the reboot')
    const w = bash(m, 'echo -7 > bus/ap/apmask')
    t.equal(w.status, 0)
    t.equal(await m.client.read('/sys/bus/ap/apmask'), `0xfe${'f'.repeat(62)}\n`, 'a write through the mount reaches the new host')
    const last = (await m.client.writeLog(0)).entries.at(-1)!
    t.same([last.origin, last.bootId, last.value], ['fuse', info.bootId, '-7\n'], 'logged against the new boot')
  })
})
