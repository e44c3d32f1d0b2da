import t from 'tap'
import { SysfsError } from '../../src/domain/errors.js'
import { createHost } from '../../src/emulator/host.js'

const TYPE = '/sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough'
const U1 = '0a0b0c0d-1111-2222-3333-444455556666'

function errno(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (e) {
    if (e instanceof SysfsError) return e.errno
    throw e
  }
  return undefined
}

t.test('B-1/B-2 T-02 boot of spec-fixture: 3 cards, 12 queues, all bound to zcrypt', async (t) => {
  const h = createHost({ profile: 'spec-fixture' })
  const devs = h.list('/sys/bus/ap/devices')
  t.same(
    devs.filter((d) => d.startsWith('card')),
    ['card05', 'card06', 'card07'],
  )
  t.equal(devs.filter((d) => d.includes('.')).length, 12)
  t.equal(h.read('/sys/bus/ap/bindings'), '12/12 (complete)\n')
  t.equal(h.read('/sys/bus/ap/apmask'), `0x${'f'.repeat(64)}\n`)
  t.equal(h.readlink('/sys/devices/ap/card05/05.0004/driver'), '../../../../bus/ap/drivers/cex4queue')
  t.equal(h.read('/sys/bus/ap/devices/card05/type'), 'CEX8C\n')
  t.equal(h.read('/sys/bus/ap/devices/07.00ff/online'), '1\n')
  const root = h.events().filter((e) => e.kind === 'uevent' && e.devpath === '/devices/ap')
  t.ok(root.some((e) => e.kind === 'uevent' && e.env.INITSCAN === 'done'))
  t.ok(root.some((e) => e.kind === 'uevent' && e.env.BINDINGS === 'complete'))
})

t.test('B-21/B-25 T-03 a mask write moves queues to vfio_ap; T-64 a repeated write is a no-op', async (t) => {
  const h = createHost({ profile: 'spec-fixture' })
  h.write('/sys/bus/ap/apmask', '-5,-6\n')
  t.equal(h.readlink('/sys/bus/ap/devices/05.0004/driver'), '../../../../bus/ap/drivers/vfio_ap')
  t.equal(h.read('/sys/bus/ap/devices/06.00ab/status'), 'unassigned\n')
  t.equal(h.readlink('/sys/bus/ap/devices/card05/driver'), '../../../bus/ap/drivers/cex4card')
  t.equal(h.read('/sys/bus/ap/bindings'), '12/12 (complete)\n')
  t.equal(
    errno(() => h.write('/sys/bus/ap/apmask', '0X41\n')),
    'EINVAL',
  )
  h.write('/sys/bus/ap/apmask', '0x80\n')
  const seq = h.events().at(-1)!.seq
  h.write('/sys/bus/ap/apmask', '0x80\n')
  t.same(h.events(seq), [], 'T-64: no reprobe, no APMASK uevent')
})

t.test('V-4/V-10/V-19 create and assign; T-20 reservation; T-12 in_use veto', async (t) => {
  const h = createHost({ profile: 'spec-fixture' })
  h.write(`${TYPE}/create`, `${U1}\n`)
  t.equal(h.read(`${TYPE}/available_instances`), '255\n')
  const M = `/sys/devices/vfio_ap/matrix/${U1}`
  h.write(`${M}/assign_adapter`, '5\n')
  t.equal(h.read(`${M}/matrix`), '05.\n')
  t.equal(
    errno(() => h.write(`${M}/assign_domain`, '4\n')),
    'EADDRNOTAVAIL',
    'T-20',
  )
  h.write('/sys/bus/ap/apmask', '-5\n')
  h.write(`${M}/assign_domain`, '4\n')
  t.equal(h.read(`${M}/matrix`), '05.0004\n')
  t.equal(h.read(`${M}/guest_matrix`), '05.0004\n')
  t.equal(h.read('/sys/bus/ap/devices/05.0004/status'), 'assigned\n')
  t.equal(
    errno(() => h.write('/sys/bus/ap/apmask', '+5\n')),
    'EBUSY',
    'T-12',
  )
  const log = h.events().filter((e) => e.kind === 'log')
  t.ok(log.some((e) => e.kind === 'log' && e.message === `Userspace may not re-assign queue 05.0004 already assigned to ${U1}`))
})

t.test('T-48 workload: requests, reset flushes with EAGAIN, reset in progress until resetMs', async (t) => {
  const h = createHost({ profile: 'spec-fixture' })
  h.advance(10)
  t.equal(h.submitRequests('05.0004', 3), 3)
  t.equal(h.read('/sys/bus/ap/devices/05.0004/pendingq_count'), '3\n')
  h.write('/sys/bus/ap/devices/05.0004/reset', '1\n')
  t.equal(h.read('/sys/bus/ap/devices/05.0004/pendingq_count'), '0\n')
  t.equal(h.read('/sys/bus/ap/devices/05.0004/reset'), 'Reset in progress.\n')
  t.same(h.requestStats('05.0004'), { submitted: 3, completed: 0, flushed: 3, rejected: 0 })
  h.advance(10)
  t.equal(h.read('/sys/bus/ap/devices/05.0004/reset'), 'No Reset Timer set.\n')
  h.submitRequests('05.0004', 2)
  h.advance(100)
  t.equal(h.requestStats('05.0004').completed, 2)
  t.equal(h.read('/sys/bus/ap/devices/05.0004/request_count'), '5\n')
})

t.test('full profile: bring-up and an assign on 65,536 queues', async (t) => {
  const h = createHost({ profile: 'full' })
  t.equal(h.read('/sys/bus/ap/bindings'), '65536/65536 (complete)\n')
  h.write('/sys/bus/ap/apmask', '-0-15\n')
  h.write('/sys/bus/ap/aqmask', '-0-15\n')
  h.write(`${TYPE}/create`, `${U1}\n`)
  const M = `/sys/devices/vfio_ap/matrix/${U1}`
  for (let a = 0; a < 16; a++) h.write(`${M}/assign_adapter`, `${a}\n`)
  h.write(`${M}/assign_domain`, '3\n')
  t.equal(h.read(`${M}/guest_matrix`).split('\n').length - 1, 16)
  t.equal(h.read('/sys/bus/ap/devices/0f.0003/status'), 'assigned\n')
  h.write(`${M}/unassign_adapter`, '15\n')
  t.equal(h.read('/sys/bus/ap/devices/0f.0003/status'), 'unassigned\n')
})

t.test('profiles: a JSON profile file with boot params; validation names the bad field', async (t) => {
  const dir = t.testdir({
    'ok.json': JSON.stringify({
      name: 'two',
      qci: { na: 255, nd: 255 },
      adapters: [{ apid: 3, rawType: 13, mode: 'ep11', depth: 4 }],
      domains: [4, 5],
      controlDomains: [4],
      boot: { aqmask: '+0-255,-4' },
    }),
    'bad.json': JSON.stringify({ name: 'bad', qci: null, adapters: [{ apid: 1, rawType: 14, mode: 'cex' }], domains: [] }),
  })
  const h = createHost({ profile: `${dir}/ok.json` })
  t.same(h.list('/sys/bus/ap/devices'), ['03.0004', '03.0005', 'card03'])
  t.equal(h.read('/sys/bus/ap/ap_domain'), '5\n', 'B-36: lowest aqmask-owned configured domain')
  t.equal(h.read('/sys/bus/ap/aqmask'), `0x${'f'.repeat(64)}\n`.replace(/^0xff/, '0xf7'))
  t.equal(h.read('/sys/bus/ap/devices/card03/type'), 'CEX7P\n')
  t.throws(() => createHost({ profile: `${dir}/bad.json` }), { code: 'INVALID_ARGUMENT', message: /adapters\[0\]\.mode/ })
  t.throws(() => createHost({ profile: 'no-such-profile' }), { code: 'NOT_FOUND' })
})

t.test('X-1..X-3 kernel profiles: legacy-5.x has no ap_config/guest_matrix and refuses busy mdev removal', async (t) => {
  const h = createHost({ profile: 'spec-fixture', kernel: 'legacy-5.x' })
  h.write('/sys/bus/ap/apmask', '-5\n')
  h.write('/sys/bus/ap/aqmask', '-4\n')
  h.write(`${TYPE}/create`, `${U1}\n`)
  const M = `/sys/devices/vfio_ap/matrix/${U1}`
  t.notOk(h.exists(`${M}/ap_config`))
  t.notOk(h.exists(`${M}/guest_matrix`))
  t.notOk(h.exists('/sys/devices/vfio_ap/matrix/features'))
  h.write(`${M}/assign_adapter`, '5\n')
  h.write(`${M}/assign_domain`, '4\n')
  h.guestOpen(U1, 'g1')
  t.equal(
    errno(() => h.write(`${M}/assign_domain`, '0x47\n')),
    'EBUSY',
    'X-3: no assign while a guest is attached',
  )
  t.equal(
    errno(() => h.write(`${M}/remove`, '1\n')),
    'EBUSY',
    'X-2/V-29 (a)',
  )
  const cur = createHost({ profile: 'spec-fixture' })
  t.equal(cur.read('/sys/devices/vfio_ap/matrix/features'), 'guest_matrix hotplug ap_config\n')
})

t.test('AsyncHost runs calls one at a time; startRealtimeClock advances virtual time', async (t) => {
  const { AsyncHost, startRealtimeClock } = await import('../../src/emulator/async-host.js')
  const h = createHost({ profile: 'spec-fixture' })
  const ah = new AsyncHost(h)
  const order: string[] = []
  await Promise.all([
    ah.write('/sys/bus/ap/apmask', '-5\n').then(() => order.push('w')),
    ah.read('/sys/bus/ap/apmask').then((v) => order.push(v.slice(0, 4))),
    ah.write('/sys/bus/ap/apmask', '0X1\n').catch((e: SysfsError) => order.push(e.errno)),
  ])
  t.same(order, ['w', '0xfb', 'EINVAL'])
  const stop = startRealtimeClock(ah, { intervalMs: 5 })
  await new Promise((r) => setTimeout(r, 60))
  stop()
  t.ok(h.now() > 0, 'virtual time moved')
})

t.test('V-20 guest_matrix always equals the filter recomputed from sysfs (incremental filter check)', async (t) => {
  const h = createHost({ profile: 'demo' })
  const M = `/sys/devices/vfio_ap/matrix/${U1}`
  const hexIds = (mask: string): number[] => {
    const out: number[] = []
    const hex = mask.trim().slice(2)
    for (let i = 0; i < 256; i++) if (parseInt(hex[i >> 2]!, 16) & (8 >> (i & 3))) out.push(i)
    return out
  }
  const expected = (): string => {
    const [apm, aqm] = h.read(`${M}/ap_config`).trim().split(',').map(hexIds) as [number[], number[]]
    const hostA = new Set(hexIds(h.read('/sys/bus/ap/ap_adapter_mask')))
    const hostQ = new Set(hexIds(h.read('/sys/bus/ap/ap_usage_domain_mask')))
    const gq = aqm.filter((d) => hostQ.has(d))
    const name = (a: number, d: number) => `${a.toString(16).padStart(2, '0')}.${d.toString(16).padStart(4, '0')}`
    const bound = (a: number, d: number) => {
      try {
        return h.readlink(`/sys/bus/ap/devices/${name(a, d)}/driver`).endsWith('/vfio_ap')
      } catch {
        return false
      }
    }
    const ga = apm.filter((a) => hostA.has(a) && gq.every((d) => bound(a, d)))
    return ga.length && gq.length ? ga.flatMap((a) => gq.map((d) => `${name(a, d)}\n`)).join('') : ''
  }
  h.write('/sys/bus/ap/apmask', '-0-7\n')
  h.write('/sys/bus/ap/aqmask', '-1,-2,-4\n')
  h.write(`${TYPE}/create`, `${U1}\n`)
  h.guestOpen(U1, 'g')
  const steps: [string, () => void][] = [
    [
      'assign 0,1,5,0x20',
      () => {
        for (const a of ['0', '1', '5', '0x20']) h.write(`${M}/assign_adapter`, `${a}\n`)
      },
    ],
    [
      'assign domains 1,2',
      () => {
        for (const d of ['1', '2']) h.write(`${M}/assign_domain`, `${d}\n`)
      },
    ],
    ['unbind 01.0002', () => h.write('/sys/bus/ap/drivers/vfio_ap/unbind', '01.0002\n')],
    ['assign domain 4', () => h.write(`${M}/assign_domain`, '4\n')],
    ['rebind 01.0002', () => h.write('/sys/bus/ap/drivers/vfio_ap/bind', '01.0002\n')],
    ['add adapter 0x20', () => h.hardware({ action: 'add-adapter', apid: 0x20, type: 'CEX8C' })],
    ['remove domain 2', () => h.hardware({ action: 'remove-domain', apqi: 2 })],
    ['add domain 2', () => h.hardware({ action: 'add-domain', apqi: 2 })],
    ['mode change of 5', () => h.hardware({ action: 'set-mode', apid: 5, mode: 'ep11' })],
    ['ap_config replace', () => h.write(`${M}/ap_config`, '0x6,0x2,\n')],
    ['unassign domain 1', () => h.write(`${M}/unassign_domain`, '1\n')],
  ]
  for (const [what, step] of steps) {
    step()
    t.equal(h.read(`${M}/guest_matrix`), expected(), what)
  }
})

// Found by test/reliability/fuzz-rest.test.ts (POST /v1/hosts/{host}/emulator/sysfs, a 4,096-character value):
// a refused write echoed the whole value into its message, so the problem body's detail was over 4 KiB.
t.test('a refused write names at most the first 64 characters of its value', async (t) => {
  const h = createHost({ profile: 'spec-fixture' })
  h.write(`${TYPE}/create`, `${U1}\n`)
  const long = `\u00e9${'9'.repeat(4095)}`
  for (const [path, value] of [
    [`/sys/devices/vfio_ap/matrix/${U1}/assign_adapter`, `x${long}`],
    ['/sys/bus/ap/devices/card05/config', long],
    ['/sys/bus/ap/devices/05.0004/online', `z${'0'.repeat(4095)}`],
  ] as const) {
    try {
      h.write(path, value)
      t.fail(`${path}: accepted`)
    } catch (e) {
      t.ok(e instanceof SysfsError, `${path}: a SysfsError`)
      t.ok((e as Error).message.length < 120, `${path}: ${(e as Error).message.length} characters: ${(e as Error).message}`)
    }
  }
})
