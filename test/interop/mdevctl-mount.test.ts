/**
 * Real mdevctl (Debian's 1.2.0) drives the emulator through `apmatrix emulator serve --mount DIR`: in a
 * private mount namespace DIR is bound over /sys and a temporary directory over /etc/mdevctl.d, so
 * mdevctl sees the emulated host as the machine's own and nothing of the real machine is touched. What
 * mdevctl does must come out as it would on an s390 LPAR: the types, a started device with the matrix the
 * emulator then reports, a definition the kernel refuses (mdevctl removes the half-built device itself),
 * and stop.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { fuseMissing, requireOrSkip, which } from '../helpers/required-tools.js'
import { strerror } from '../helpers/strerror.js'
import { scratchDir, startMounted } from '../emulator/fuse/mounted-emulator.js'

const U1 = '11111111-2222-4333-8444-555555555555'
const U2 = '66666666-7777-4888-9999-aaaaaaaaaaaa'
const U3 = '0b7a2f1e-3c4d-4e5f-8a9b-0c1d2e3f4a5b'
const MATRIX = '/sys/devices/vfio_ap/matrix'
const TYPE_DIR = `${MATRIX}/mdev_supported_types/vfio_ap-passthrough`

function missing(): string | undefined {
  return (
    fuseMissing({ namespaces: true }) ?? (which('mdevctl') ? undefined : "mdevctl not found: install Debian package 'mdevctl' (apt-get install -y mdevctl)")
  )
}

requireOrSkip(t, 'real mdevctl on the FUSE mount of the emulator', missing(), async (t) => {
  const scratch = scratchDir(t)
  const m = await startMounted(t, { dir: path.join(scratch, 'sys') })
  // mdevctl's self-check wants its configuration tree; callouts and notifiers stay empty.
  const etc = path.join(scratch, 'mdevctl.d')
  fs.mkdirSync(path.join(etc, 'scripts.d/callouts'), { recursive: true })
  fs.mkdirSync(path.join(etc, 'scripts.d/notifiers'), { recursive: true })
  const json = (name: string, attrs: Array<Record<string, string>>): string => {
    const file = path.join(scratch, `${name}.json`)
    fs.writeFileSync(file, JSON.stringify({ mdev_type: 'vfio_ap-passthrough', start: 'manual', attrs }))
    return file
  }
  const mdevctl = (...args: string[]) => {
    const r = spawnSync(
      'unshare',
      ['-m', 'sh', '-c', 'mount --bind "$1" /sys && mount --bind "$2" /etc/mdevctl.d && shift 2 && exec mdevctl "$@"', 'sh', m.dir, etc, ...args],
      {
        encoding: 'utf8',
        timeout: 20_000,
      },
    )
    if (r.error) throw r.error
    return { status: r.status, stdout: r.stdout, stderr: r.stderr }
  }

  // The host set aside adapters 5 and 6 and domains 4 and 0x47 for vfio_ap (T-15), by the test's hand.
  await m.client.write('/sys/bus/ap/apmask', '-5,-6\n')
  await m.client.write('/sys/bus/ap/aqmask', '-4,-0x47\n')
  const seq0 = (await m.client.writeLog(0)).lastSeq

  t.test('mdevctl types lists vfio_ap-passthrough under matrix', async (t) => {
    const r = mdevctl('types')
    t.equal(r.status, 0, r.stderr)
    t.equal(r.stdout, 'matrix\n  vfio_ap-passthrough\n    Available instances: 256\n    Device API: vfio-ap\n    Name: VFIO AP Passthrough Device\n\n')
    const j = mdevctl('types', '--dumpjson')
    t.equal(j.status, 0, j.stderr)
    t.same(JSON.parse(j.stdout), [
      { matrix: [{ 'vfio_ap-passthrough': { available_instances: 256, device_api: 'vfio-ap', name: 'VFIO AP Passthrough Device' } }] },
    ])
  })

  t.test('mdevctl start --jsonfile creates the device with the matrix the emulator then reports; list reads it back', async (t) => {
    const good = json('good', [
      { assign_adapter: '5' },
      { assign_adapter: '6' },
      { assign_domain: '4' },
      { assign_domain: '0x47' },
      { assign_control_domain: '4' },
    ])
    const r = mdevctl('start', '--parent', 'matrix', '--jsonfile', good, '--uuid', U1)
    t.same([r.status, r.stderr], [0, ''])
    t.equal(await m.client.read(`${MATRIX}/${U1}/matrix`), '05.0004\n05.0047\n06.0004\n06.0047\n')
    t.equal(await m.client.read(`${MATRIX}/${U1}/control_domains`), '0004\n')
    t.equal(
      await m.client.read(`${MATRIX}/${U1}/guest_matrix`),
      '05.0004\n05.0047\n06.0004\n06.0047\n',
      'all bound to vfio_ap: the guest would get it all (V-20)',
    )
    t.equal(await m.client.read(`${TYPE_DIR}/available_instances`), '255\n')
    t.equal(mdevctl('list').stdout, `${U1} matrix vfio_ap-passthrough manual\n\n`)
    const dump = mdevctl('list', '--dumpjson')
    t.equal(dump.status, 0, dump.stderr)
    // An active device that has no definition: mdevctl takes parent and type from sysfs, attributes only
    // from a definition or a callout (there is none here).
    t.same(JSON.parse(dump.stdout), [{ matrix: [{ [U1]: { mdev_type: 'vfio_ap-passthrough', start: 'manual', attrs: [] } }] }])
  })

  t.test('a definition with an APQN the host owns fails as on the kernel and leaves no half-built device', async (t) => {
    const seq = (await m.client.writeLog(0)).lastSeq
    const bad = json('bad', [{ assign_adapter: '7' }, { assign_domain: '0xab' }])
    const r = mdevctl('start', '--parent', 'matrix', '--jsonfile', bad, '--uuid', U2)
    t.equal(r.status, 1)
    t.equal(
      r.stderr,
      `Error: Failed to write 0xab to attribute assign_domain\n\nCaused by:\n    ${strerror('EADDRNOTAVAIL')} (os error ${os.constants.errno.EADDRNOTAVAIL})\n`,
      "mdevctl's own message: the kernel's EADDRNOTAVAIL",
    )
    t.notOk((await m.client.list(MATRIX)).includes(U2), 'no device U2')
    t.equal(await m.client.read(`${TYPE_DIR}/available_instances`), '255\n')
    t.same(
      (await m.client.writeLog(seq)).entries.map((e) => [e.path.slice(MATRIX.length + 1), e.value, e.errno ?? 'ok', e.origin]),
      [
        ['mdev_supported_types/vfio_ap-passthrough/create', U2, 'ok', 'fuse'],
        [`${U2}/assign_adapter`, '7', 'ok', 'fuse'],
        [`${U2}/assign_domain`, '0xab', 'EADDRNOTAVAIL', 'fuse'],
        [`${U2}/remove`, '1', 'ok', 'fuse'],
      ],
      'create (36 bytes, no newline), the attributes, the refused one, then mdevctl removes the device',
    )
    const shared = json('shared', [{ assign_adapter: '5' }, { assign_domain: '4' }])
    const s = mdevctl('start', '--parent', 'matrix', '--jsonfile', shared, '--uuid', U2)
    t.equal(s.status, 1)
    t.match(s.stderr, `Caused by:\n    ${strerror('EADDRINUSE')} (os error ${os.constants.errno.EADDRINUSE})`, 'an APQN of another device: EADDRINUSE (V-10)')
    t.notOk((await m.client.list(MATRIX)).includes(U2))
  })

  t.test('a defined device: define, start by uuid, list --dumpjson with its attributes, stop, undefine', async (t) => {
    const def = json('defined', [{ assign_adapter: '7' }, { assign_domain: '0xab' }])
    t.equal(mdevctl('define', '--parent', 'matrix', '--jsonfile', def, '--uuid', U3).status, 0)
    t.ok(fs.existsSync(path.join(etc, 'matrix', U3)), 'the definition is in the private /etc/mdevctl.d')
    const r = mdevctl('start', '--uuid', U3)
    t.equal(r.status, 1, "07.00ab is still the host's (apmask x aqmask)")
    t.match(r.stderr, strerror('EADDRNOTAVAIL'))
    await m.client.write('/sys/bus/ap/apmask', '-7\n')
    const r2 = mdevctl('start', '--uuid', U3)
    t.same([r2.status, r2.stderr], [0, ''], 'once the host gave adapter 7 up')
    t.equal(await m.client.read(`${MATRIX}/${U3}/matrix`), '07.00ab\n')
    const dump = JSON.parse(mdevctl('list', '--dumpjson', '--uuid', U3).stdout) as Record<string, unknown>
    t.same(dump, { mdev_type: 'vfio_ap-passthrough', start: 'manual', attrs: [{ assign_adapter: '7' }, { assign_domain: '0xab' }] })
    t.equal(mdevctl('stop', '--uuid', U3).status, 0)
    t.equal(mdevctl('undefine', '--uuid', U3).status, 0)
  })

  t.test('mdevctl stop removes the device', async (t) => {
    const r = mdevctl('stop', '--uuid', U1)
    t.same([r.status, r.stderr], [0, ''])
    t.same(
      (await m.client.list(MATRIX)).filter((e) => /^[0-9a-f]{8}-/.test(e)),
      [],
      'no matrix device left',
    )
    t.equal(await m.client.read(`${TYPE_DIR}/available_instances`), '256\n')
    t.equal(mdevctl('list').stdout, '\n')
    const busWrites = (await m.client.writeLog(seq0)).entries.filter((e) => !e.path.startsWith(`${MATRIX}/`))
    t.same(
      busWrites.map((e) => [e.path, e.origin]),
      [['/sys/bus/ap/apmask', 'grpc']],
      'mdevctl wrote nothing outside the matrix device (only the test changed apmask)',
    )
  })
})
