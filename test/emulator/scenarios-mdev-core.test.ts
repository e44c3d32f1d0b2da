/**
 * The mdev core's part of sysfs (what mdevctl and libvirt read), vfio_ap's private `matrix` bus, and the
 * symbolic links between them: V-1, V-2, V-3, V-4, V-5. Links are checked the way a real VFS resolves them
 * (relative to the link's own directory), because a FUSE mount of the emulator hands them to the kernel.
 */
import path from 'node:path'
import t from 'tap'
import type { EmulatedHostApi, KernelProfileName } from '../../src/emulator/api.js'
import { BUS, M1, M2, MATRIX, TYPE_DIR, assign, createMdev, echo, errnoOf, loadProfile, mdevPath, newHost, vfioMasks } from './helpers.js'

const MDEV_BUS = '/sys/bus/mdev'
const CLASS = '/sys/class/mdev_bus'

/** Every node under `dir` without going through links: [path, kind] pairs. */
function walk(host: EmulatedHostApi, dir: string, out: Array<[string, string]> = []): Array<[string, string]> {
  for (const name of host.list(dir)) {
    const p = `${dir}/${name}`
    const s = host.stat(p)
    out.push([p, s.type])
    if (s.type === 'dir') walk(host, p, out)
  }
  return out
}

/** Where a relative link target lands, resolved lexically against the link's directory (the walk only visits real directories). */
function landing(linkPath: string, target: string): string {
  return path.posix.normalize(path.posix.join(path.posix.dirname(linkPath), target))
}

t.test('V-3/V-5: the mdev core parts exist with exactly the kernel link targets', async (t) => {
  const host = newHost()
  vfioMasks(host)
  t.same(host.list('/sys'), ['bus', 'class', 'devices'])
  t.same(host.list('/sys/bus'), ['ap', 'matrix', 'mdev'])
  t.same(host.list(CLASS), ['matrix'], 'one mdev parent: the matrix device')
  t.equal(host.readlink(`${CLASS}/matrix`), '../../devices/vfio_ap/matrix')
  t.same(host.list(`${CLASS}/matrix/mdev_supported_types`), ['vfio_ap-passthrough'], 'the type through the class link')
  t.same(host.list(`${MDEV_BUS}/devices`), [], 'no mdev yet')

  t.equal(
    errnoOf(() => host.write(`${CLASS}/matrix/mdev_supported_types/vfio_ap-passthrough/create`, M1)),
    'OK',
    'V-4: 36 bytes, no newline (what mdevctl writes)',
  )
  t.same(host.list(`${MDEV_BUS}/devices`), [M1])
  t.equal(host.readlink(`${MDEV_BUS}/devices/${M1}`), `../../../devices/vfio_ap/matrix/${M1}`)
  t.equal(host.readlink(`${TYPE_DIR}/devices/${M1}`), `../../../${M1}`)
  t.equal(host.readlink(`${mdevPath(M1)}/mdev_type`), '../mdev_supported_types/vfio_ap-passthrough')
  t.equal(host.readlink(`${mdevPath(M1)}/driver`), '../../../../bus/mdev/drivers/vfio_ap_mdev')
  t.equal(host.readlink(`${mdevPath(M1)}/subsystem`), '../../../../bus/mdev')
  t.same(host.list(`${MDEV_BUS}/drivers/vfio_ap_mdev`), [M1, 'uevent'])
  t.equal(host.readlink(`${MATRIX}/driver`), '../../../bus/matrix/drivers/vfio_ap')
  t.equal(host.readlink(`${MATRIX}/subsystem`), '../../../bus/matrix')
  t.equal(host.readlink('/sys/bus/matrix/devices/matrix'), '../../../devices/vfio_ap/matrix')
  t.equal(host.readlink('/sys/bus/matrix/drivers/vfio_ap/matrix'), '../../../../devices/vfio_ap/matrix')
  t.same(host.list('/sys/bus/matrix/drivers/vfio_ap'), ['matrix', 'uevent'], 'V-1: the private driver has no bind/unbind files')

  // What mdevctl does: write the attributes through bus/mdev/devices/<uuid>, read the type name back.
  echo(host, `${MDEV_BUS}/devices/${M1}/assign_adapter`, 5)
  echo(host, `${MDEV_BUS}/devices/${M1}/assign_domain`, 4)
  t.equal(host.read(`${mdevPath(M1)}/matrix`), '05.0004\n', 'writes through the bus link reach the mdev')
  t.equal(host.read(`${MDEV_BUS}/devices/${M1}/mdev_type/name`), 'VFIO AP Passthrough Device\n')
  t.same(
    host.stat(`${MDEV_BUS}/devices/${M1}/mdev_type`),
    { type: 'link', target: '../mdev_supported_types/vfio_ap-passthrough' },
    'stat does not follow the last link',
  )
  t.same(host.stat(`${MDEV_BUS}/devices/${M1}/remove`), { type: 'attr', readable: false, writable: true })

  echo(host, `${MDEV_BUS}/devices/${M1}/remove`, 1)
  t.same(host.list(`${MDEV_BUS}/devices`), [], 'V-29: removed from the mdev bus')
  t.same(host.list(`${TYPE_DIR}/devices`), [])
  t.same(host.list(`${MDEV_BUS}/drivers/vfio_ap_mdev`), ['uevent'])
  t.equal(
    errnoOf(() => host.readlink(`${MDEV_BUS}/devices/${M1}`)),
    'ENOENT',
  )
})

t.test('V-4: create takes the UUID with or without one trailing newline, nothing else', async (t) => {
  const host = newHost()
  t.equal(
    errnoOf(() => host.write(`${TYPE_DIR}/create`, M1)),
    'OK',
    '36 bytes',
  )
  t.equal(
    errnoOf(() => host.write(`${TYPE_DIR}/create`, `${M2}\n`)),
    'OK',
    '37 bytes ending in a newline',
  )
  t.same(host.list(`${MDEV_BUS}/devices`), [M1, M2].sort())
  const third = '0b7a2f1e-3c4d-4e5f-8a9b-0c1d2e3f4a5b'
  t.equal(
    errnoOf(() => host.write(`${TYPE_DIR}/create`, `${third}\n\n`)),
    'EINVAL',
    '38 bytes',
  )
  t.equal(
    errnoOf(() => host.write(`${TYPE_DIR}/create`, `${third} `)),
    'EINVAL',
    '37 bytes not ending in a newline',
  )
  t.equal(
    errnoOf(() => host.write(`${TYPE_DIR}/create`, `\n${third}`)),
    'EINVAL',
    'a leading newline',
  )
  t.equal(
    errnoOf(() => host.write(`${TYPE_DIR}/create`, third.toUpperCase())),
    'OK',
    'upper-case hex is a UUID too',
  )
  t.ok(host.list(`${MDEV_BUS}/devices`).includes(third), 'and the device is named in lower case')
  t.equal(host.read(`${TYPE_DIR}/available_instances`), '253\n')
})

t.test('V-1: without vfio_ap there is no matrix device, no mdev bus and no mdev_bus class', async (t) => {
  const profile = { ...loadProfile('spec-fixture'), modules: { vfio_ap: false } }
  const host = newHost({ profile })
  t.same(host.list('/sys/bus'), ['ap'])
  t.same(host.list('/sys/class'), [], '/sys/class itself exists, as on any Linux')
  t.same(host.list('/sys/devices'), ['ap'])
  for (const p of [CLASS, MDEV_BUS, '/sys/bus/matrix', '/sys/devices/vfio_ap', `${BUS}/drivers/vfio_ap`]) {
    t.equal(
      errnoOf(() => host.stat(p)),
      'ENOENT',
      p,
    )
  }
})

t.test('V-2: matrix/features exists where the kernel profile has it', async (t) => {
  const want: Record<KernelProfileName, string | null> = {
    'current-6.x': 'guest_matrix hotplug ap_config\n',
    '6.19-override': 'guest_matrix hotplug ap_config\n',
    'legacy-5.x': null,
  }
  for (const [kernel, text] of Object.entries(want) as Array<[KernelProfileName, string | null]>) {
    const host = newHost({ kernel })
    if (text === null) {
      t.equal(
        errnoOf(() => host.read(`${MATRIX}/features`)),
        'ENOENT',
        `${kernel}: no features attribute`,
      )
      t.notOk(host.list(MATRIX).includes('features'), `${kernel}: not listed`)
    } else {
      t.equal(host.read(`${MATRIX}/features`), text, kernel)
      t.same(host.stat(`${MATRIX}/features`), { type: 'attr', readable: true, writable: false })
    }
  }
})

t.test('every link in the tree resolves, relative to its own directory, to an existing node of the tree', async (t) => {
  for (const kernel of ['current-6.x', 'legacy-5.x', '6.19-override'] as const) {
    const host = newHost({ kernel })
    vfioMasks(host)
    createMdev(host, M1)
    assign(host, M1, { adapters: [5], domains: [4], control: [4] })
    createMdev(host, M2)
    echo(host, `${BUS}/drivers/vfio_ap/unbind`, '06.0004') // an unbound queue: no driver link
    const nodes = walk(host, '/sys')
    const links = nodes.filter(([, k]) => k === 'link')
    t.ok(links.length > 50, `${kernel}: ${links.length} links found`)
    const bad: string[] = []
    for (const [p] of links) {
      const target = host.readlink(p)
      const to = landing(p, target)
      if (target.startsWith('/') || !to.startsWith('/sys/')) bad.push(`${p} -> ${target}: leaves /sys`)
      else if (errnoOf(() => host.stat(to)) !== 'OK') bad.push(`${p} -> ${target}: ${to} does not exist`)
      else if (host.stat(to).type === 'dir' && JSON.stringify(host.list(p)) !== JSON.stringify(host.list(to))) bad.push(`${p}: lists differently from ${to}`)
    }
    t.same(bad, [], `${kernel}: no dangling or escaping link`)
    t.notOk(
      nodes.some(([p]) => p.startsWith(`${BUS}/devices/06.0004/`)),
      'the walk does not go through links',
    )
    t.equal(
      errnoOf(() => host.readlink(`${BUS}/devices/06.0004/driver`)),
      'ENOENT',
      'the unbound queue has no driver link',
    )
  }
})

t.test('paths walk like the VFS: .. after a link goes up from where the link led; 40 links at most', async (t) => {
  const host = newHost()
  t.ok(host.list(`${BUS}/devices/05.0004/..`).includes('05.0047'), '.. of a queue reached through bus/ap/devices is its card')
  t.equal(host.read(`${BUS}/devices/05.0004/../hwtype`), host.read(`${BUS}/devices/card05/hwtype`))
  t.equal(host.read(`/sys/../sys/./bus/ap/apmask`), host.read(`${BUS}/apmask`), '.. above /sys stays at the top')
  t.equal(
    errnoOf(() => host.read('sys/bus/ap/apmask')),
    'ENOENT',
    'relative paths are not paths of this tree',
  )
  t.equal(
    errnoOf(() => host.read(`${BUS}/apmask/x`)),
    'ENOTDIR',
  )
  const hops = (n: number): string => `${BUS}/devices/card05${'/subsystem/devices/card05'.repeat(n)}`
  t.ok(host.list(hops(19)).includes('hwtype'), '39 links')
  t.equal(
    errnoOf(() => host.list(hops(20))),
    'ELOOP',
    '41 links',
  )
})
