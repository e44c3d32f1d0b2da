/**
 * The grid model of `inventory --domains` (src/cli/format/domain-grid.ts) on API answers written out by hand:
 * the states a running reconciler repairs at once (a queue of a device unbound by hand, so the kernel filters
 * its whole adapter from the guest, V-20) and the size of the `full` host (256 x 256).
 */
import t from 'tap'
import type { Adapter, Mdev, Queue } from '../../src/cli/client/api-types.js'
import { buildDomainGrid, cellText, renderDomainGrid } from '../../src/cli/format/domain-grid.js'

const U = '33333333-0000-4000-8000-000000000001'
const hex = (n: number, w: number) => n.toString(16).padStart(w, '0')
const apqn = (a: number, d: number) => `${hex(a, 2)}.${hex(d, 4)}`

function adapter(apid: number): Adapter {
  return {
    apid,
    hwtype: 14,
    rawHwtype: 14,
    type: 'CEX8C',
    mode: 'cca',
    functions: ['COPRO'],
    config: true,
    chkstop: false,
    online: true,
    driver: 'cex4card',
    depth: 8,
  }
}
function queue(apid: number, apqi: number, over: Partial<Queue> = {}): Queue {
  const base: Queue = {
    apqn: apqn(apid, apqi),
    apid,
    apqi,
    driver: 'cex4queue',
    vfioStatus: null,
    config: true,
    chkstop: false,
    online: true,
    requestqCount: 0,
    pendingqCount: 0,
    requestCount: 0,
    owner: null,
  }
  return { ...base, ...over }
}
function mdev(uuid: string, adapters: number[], domains: number[], status: Partial<Mdev['status']>): Mdev {
  return {
    metadata: { uuid, host: 'h', owner: null, labels: {}, generation: 1, createdAt: '', updatedAt: '', resourceVersion: 'x' },
    spec: { adapters, domains, controlDomains: [], state: 'started' },
    status: { observedGeneration: 1, conditions: [], ...status },
  } as unknown as Mdev
}
const ids = (n: number) => Array.from({ length: n }, (_, i) => i)

t.test('a queue of a device unbound by hand: its adapter is filtered from the guest (V-20), the rest is in the guest', async (t) => {
  const vfio = { driver: 'vfio_ap' as const, online: null, vfioStatus: 'in use' as const, owner: U }
  const queues = [queue(5, 4, vfio), queue(5, 71, vfio), queue(6, 4, { ...vfio, driver: 'none', vfioStatus: null }), queue(6, 71, vfio), queue(0, 4)]
  const dev = mdev(U, [5, 6], [4, 71], {
    active: true,
    guest: 'vm1',
    matrix: ['05.0004', '05.0047', '06.0004', '06.0047'],
    guestMatrix: ['05.0004', '05.0047'],
  })
  const grid = buildDomainGrid({
    host: 'h',
    adapters: [adapter(0), adapter(5), adapter(6)],
    queues,
    domains: { usageDomains: [4, 71], controlDomains: [4, 71], hostDomains: [4] },
    masks: { metadata: {} as never, spec: {} as never, status: { apmask: '', aqmask: '', apmaskIds: [0], aqmaskIds: [4], observedAt: '' } } as never,
    mdevs: [dev],
    features: ['guest_matrix'],
  })
  const at = (a: number, d: number) => cellText(grid, grid.cell(a, d))
  t.equal(at(5, 4), 'A*')
  t.equal(at(5, 71), 'A*')
  t.equal(at(6, 4), 'A~', 'unbound and filtered: filtered is said')
  t.equal(at(6, 71), 'A~', 'bound, but its adapter is filtered')
  t.equal(at(0, 4), '# ')
  t.equal(at(0, 71), '. ')
  const noGuestMatrix = buildDomainGrid({
    host: 'h',
    adapters: [adapter(6)],
    queues: [queues[2]!],
    domains: { usageDomains: [4], controlDomains: [], hostDomains: [] },
    masks: { status: null, spec: { apmaskIds: [], aqmaskIds: [] } } as never,
    mdevs: [dev],
    features: [],
  })
  t.equal(cellText(noGuestMatrix, noGuestMatrix.cell(6, 4)), 'A?', 'a kernel without guest_matrix: unbound only')
  t.equal(noGuestMatrix.masksFromSpec, true)
})

t.test('the full host: 256 x 256 APQNs in one device, 16 blocks of 256 rows', async (t) => {
  const queues: Queue[] = []
  for (const a of ids(256)) for (const d of ids(256)) queues.push(queue(a, d, { driver: 'vfio_ap', online: null, vfioStatus: 'assigned', owner: U }))
  const all = queues.map((q) => q.apqn)
  const grid = buildDomainGrid({
    host: 'full',
    adapters: ids(256).map(adapter),
    queues,
    domains: { usageDomains: ids(256), controlDomains: ids(256), hostDomains: [] },
    masks: { status: { apmaskIds: [], aqmaskIds: [] } } as never,
    mdevs: [mdev(U, ids(256), ids(256), { active: true, guest: null, matrix: all, guestMatrix: all })],
    features: ['guest_matrix'],
  })
  const text = renderDomainGrid(grid, { usageDomains: ids(256), controlDomains: ids(256), hostDomains: [] })
  t.equal(text.split('\n').filter((l) => l.startsWith('CARD  ')).length, 16)
  t.equal(text.split('\n').filter((l) => /^[0-9a-f]{2} {4}(A {2}){15}A$/.test(l)).length, 256 * 16, 'every cell is the device')
})
