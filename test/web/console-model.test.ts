/**
 * The console's model (web/console/src/model.ts, docs/console.md): buildView keeps what did not change. The
 * grid repaints exactly the cells that are new objects, so reuse is the contract: a change that marks no
 * cell (a label) keeps every cell, a changed queue or device matrix replaces exactly the cells it touches,
 * and a rebuilt cell shows the new state. Pure: no browser, no server.
 */
import t from 'tap'
import type { Adapter, BusMdev, Mdev, Queue } from '../../web/console/src/api-types.js'
import { apqnOf, buildView, key, type Snapshot, type View } from '../../web/console/src/model.js'

const DEV = 'a1111111-0000-4000-8000-000000000001'
const ADAPTERS = [5, 6]
const DOMAINS = [4, 0x47]

function adapter(apid: number): Adapter {
  return { apid, type: 'CEX8C', mode: 'cca', hwtype: 14, functions: [], config: true, chkstop: false, online: true, driver: 'cex4card' }
}

function queue(apid: number, apqi: number, over: Partial<Queue> = {}): Queue {
  return {
    apqn: apqnOf(apid, apqi),
    apid,
    apqi,
    driver: apid === 5 ? 'vfio_ap' : 'cex4queue',
    vfioStatus: null,
    config: true,
    chkstop: false,
    online: true,
    requestqCount: 0,
    pendingqCount: 0,
    requestCount: 0,
    owner: null,
    ...over,
  }
}

function mdev(labels: Record<string, string>): Mdev {
  return {
    metadata: { uuid: DEV, host: 'h', generation: 1, resourceVersion: '1', labels, owner: null, origin: 'api' },
    spec: { adapters: [5], domains: [4], controlDomains: [], state: 'running' },
    status: { conditions: [] },
  }
}

function bus(matrix: string[]): BusMdev {
  return { uuid: DEV, managed: true, adapters: [5], domains: [4], controlDomains: [], matrix, guestMatrix: matrix, guest: null }
}

/** Adapters 5 and 6 x domains 4 and 0x47; adapter 5 left to vfio_ap (outside apmask), DEV holds 05.0004. */
function snapshot(): Snapshot {
  const queues = new Map<string, Queue>()
  for (const a of ADAPTERS) for (const d of DOMAINS) queues.set(apqnOf(a, d), queue(a, d, a === 5 && d === 4 ? { owner: DEV } : {}))
  const mask = { apmask: '', aqmask: '', apmaskIds: [6], aqmaskIds: DOMAINS }
  return {
    host: { name: 'h', driver: 'emulated', profile: null, maxAdapterId: 255, maxDomainId: 255 },
    adapters: ADAPTERS.map(adapter),
    domains: { usageDomains: DOMAINS, controlDomains: [], hostDomains: DOMAINS },
    masks: { metadata: { host: 'h', generation: 1, resourceVersion: '1' }, spec: mask, status: { ...mask, observedAt: '2026-01-01T00:00:00Z' } },
    busMdevs: [bus(['05.0004'])],
    mdevs: [mdev({})],
    limited: false,
    queues,
    queuesLoaded: true,
    queuesVersion: 1,
  }
}

/** The APQNs whose cell object in `b` is not the one in `a`. */
function replaced(a: View, b: View): string[] {
  return [...b.cells].filter(([k, c]) => a.cells.get(k) !== c).map(([, c]) => c.apqn)
}

t.test('a change that marks no cell keeps every cell; the device list is new', async (t) => {
  const s = snapshot()
  const v1 = buildView(s, false)
  t.equal(v1.cells.get(key(5, 4))?.device, DEV, 'the setup holds: 05.0004 is the device')
  const later = { ...s, mdevs: [mdev({ team: 'blue' })], masks: { ...s.masks!, status: { ...s.masks!.status!, observedAt: '2026-01-01T00:00:05Z' } } }
  const v2 = buildView(later, false, v1)
  t.equal(v2.cells, v1.cells, 'a new label and a newer read of the same masks: the same cells')
  t.same(v2.deviceByUuid.get(DEV)?.mdev?.metadata.labels, { team: 'blue' }, 'the device list has the new label')
})

t.test('a changed queue replaces its cell only, which shows the change', async (t) => {
  const s = snapshot()
  const v1 = buildView(s, false)
  s.queues.set('06.0047', queue(6, 0x47, { driver: 'none' }))
  s.queuesVersion++
  const v2 = buildView(s, false, v1)
  t.same(replaced(v1, v2), ['06.0047'])
  t.equal(v2.cells.get(key(6, 0x47))?.marks.unbound, true, 'the new cell is marked unbound')
  // A newer queue object with the same attributes is a new cell too (the cell holds the queue it shows).
  s.queues.set('06.0004', queue(6, 4))
  s.queuesVersion++
  t.same(replaced(v2, buildView(s, false, v2)), ['06.0004'])
})

t.test("a device's new matrix replaces the cells it gains, and only those", async (t) => {
  const s = snapshot()
  const v1 = buildView(s, false)
  const v2 = buildView({ ...s, busMdevs: [bus(['05.0004', '05.0047'])] }, false, v1)
  t.same(replaced(v1, v2), ['05.0047'])
  t.match(v2.cells.get(key(5, 0x47)), { kind: 'device', device: DEV })
})

t.test('all ids: the same cells where the compact grid had them', async (t) => {
  const s = snapshot()
  const compact = buildView(s, false)
  const full = buildView(s, true, compact)
  t.equal(full.cells.size, 256 * 256)
  t.equal(full.cells.get(key(5, 4)), compact.cells.get(key(5, 4)), 'a cell of both grids is kept')
  t.equal(full.cells.get(key(0, 0))?.kind, 'unconfigured', 'an id the host lacks is not configured')
})
