/**
 * The bus port's cheap reads on every driver: `observeHostFacts` (no device walk), `observeAdapters` (no queue
 * attribute) and `observeQueues` (names listed, filtered and paged before any attribute is read). One emulated machine is put into the same state on
 * each driver (in-process emulator, remote emulator over gRPC, `sysfs` over node:fs on a copy of its tree, an
 * `apmatrix agent` serving that copy); each driver must answer what its own full read (`observe`) says, and
 * all four the same. A page of queues must not read the attributes of queues outside it.
 */
import path from 'node:path'
import t, { type Test } from 'tap'
import { startAgentServer } from '../../src/agent/agent-server.js'
import { emulatorAccess } from '../../src/bus/emulator-access.js'
import { NodeSysfsAccess } from '../../src/bus/node-sysfs-access.js'
import type { BusPort, ObservedQueue, QueuePageQuery, SysfsAccess } from '../../src/bus/port.js'
import { SysfsBus } from '../../src/bus/sysfs-bus.js'
import { Mask } from '../../src/domain/mask.js'
import { createHost } from '../../src/emulator/host.js'
import { connectEmulator } from '../../src/emulator-remote/client.js'
import { startEmulatorServer } from '../../src/emulator-remote/server.js'
import { connectHostBus } from '../../src/hostbus/client.js'
import { materializeSysfs, tempDir } from './sysfs-tree.js'

const MATRIX = '/sys/devices/vfio_ap/matrix'
const UUID = 'a1a1a1a1-0000-4000-8000-000000000001'

/**
 * spec-fixture (adapters 5, 6, 7 x domains 4, 0x47, 0xab, 0xff): adapter 5 goes to vfio_ap, a matrix device
 * holds 05.0004 and 05.0047, and root unbinds 06.00ab from cex4queue (driver none).
 */
const SETUP: Array<[string, string]> = [
  [
    '/sys/bus/ap/apmask',
    `${Mask.full()
      .minus(Mask.of([5]))
      .toString()}\n`,
  ],
  [`${MATRIX}/mdev_supported_types/vfio_ap-passthrough/create`, `${UUID}\n`],
  [`${MATRIX}/${UUID}/assign_adapter`, '5\n'],
  [`${MATRIX}/${UUID}/assign_domain`, '4\n'],
  [`${MATRIX}/${UUID}/assign_domain`, '0x47\n'],
  ['/sys/bus/ap/drivers/cex4queue/unbind', '06.00ab\n'],
]

/** A SysfsAccess that counts attribute reads by path, to prove what a page read. */
function counting(a: SysfsAccess): { access: SysfsAccess; reads: string[] } {
  const reads: string[] = []
  return {
    reads,
    access: {
      read: (p) => (reads.push(p), a.read(p)),
      write: (p, v) => a.write(p, v),
      list: (p) => a.list(p),
      readlink: (p) => a.readlink(p),
    },
  }
}

interface Driver {
  name: string
  bus: BusPort
  reads: string[]
}

async function drivers(t: Test): Promise<Driver[]> {
  const core = createHost({ profile: 'spec-fixture' })
  for (const [p, v] of SETUP) core.write(p, v)
  const out: Driver[] = []
  const add = (name: string, access: SysfsAccess) => {
    const c = counting(access)
    out.push({ name, bus: new SysfsBus(c.access), reads: c.reads })
  }
  add('in-process emulator', emulatorAccess(core))

  const server = await startEmulatorServer({ addr: '127.0.0.1:0', profile: 'spec-fixture', clock: 'manual' })
  t.teardown(() => server.close())
  const remote = connectEmulator(server.address)
  t.teardown(() => remote.close())
  for (const [p, v] of SETUP) await remote.write(p, v)
  add('remote emulator', remote)

  const root = tempDir(t)
  materializeSysfs(core, root)
  add('sysfs', new NodeSysfsAccess({ root, lock: null }))

  const agent = await startAgentServer({ addr: '127.0.0.1:0', sysfsRoot: root, lockPath: path.join(tempDir(t), 'lock'), watch: 'poll', pollMs: 60_000 })
  const client = connectHostBus(agent.address, { timeoutMs: 5000 })
  t.teardown(async () => {
    client.close()
    await agent.close()
  })
  add('agent', client)
  return out
}

/** What `observeQueues(q)` must answer, from the full inventory. */
function expectedPage(all: ObservedQueue[], q: QueuePageQuery): { items: ObservedQueue[]; next?: string } {
  const match = all
    .filter(
      (x) =>
        (q.adapter === undefined || x.apid === q.adapter) &&
        (q.domain === undefined || x.apqi === q.domain) &&
        (q.driver === undefined || x.driver === q.driver) &&
        (q.owner === undefined || x.owner === q.owner) &&
        (q.after === undefined || x.apqn > q.after),
    )
    .sort((a, b) => (a.apqn < b.apqn ? -1 : 1))
  const items = match.slice(0, q.limit)
  return match.length > q.limit ? { items, next: items.at(-1)!.apqn } : { items }
}

const QUERIES: QueuePageQuery[] = [
  { limit: 5 },
  { limit: 5, after: '06.0004' },
  { limit: 100 },
  { limit: 2, adapter: 5 },
  { limit: 10, domain: 0xab },
  { limit: 10, driver: 'vfio_ap' },
  { limit: 10, driver: 'none' },
  { limit: 10, driver: 'cex4queue', adapter: 6 },
  { limit: 10, owner: UUID },
  { limit: 3, owner: null, after: '06.00ab' },
  { limit: 10, adapter: 9 },
]

t.test('observeHostFacts, observeAdapters and observeQueues agree with observe() on every driver, and across drivers', async (t) => {
  const ds = await drivers(t)
  const answers: unknown[] = []
  for (const d of ds) {
    const full = await d.bus.observe()
    const { queues, mdevs, mdevCapacity, adapters, ...facts } = full
    t.same(await d.bus.observeHostFacts(), facts, `${d.name}: host facts = the facts of the full read`)
    t.same(await d.bus.observeAdapters(), adapters, `${d.name}: adapters = the adapters of the full read`)
    t.same(
      adapters.map((a) => a.apid),
      [5, 6, 7],
      `${d.name}: the setup holds (three adapters)`,
    )
    t.same(full.queues.find((q) => q.apqn === '06.00ab')?.driver, 'none', `${d.name}: the setup holds (06.00ab unbound)`)
    const pages: unknown[] = []
    for (const q of QUERIES) {
      const page = await d.bus.observeQueues(q)
      t.same(page, expectedPage(full.queues, q), `${d.name}: observeQueues(${JSON.stringify(q)})`)
      pages.push(page)
    }
    // Paging through everything with the `next` marks gives every queue once, in order.
    const seen: string[] = []
    for (let after: string | undefined; ; ) {
      const page = await d.bus.observeQueues({ limit: 5, ...(after === undefined ? {} : { after }) })
      seen.push(...page.items.map((i) => i.apqn))
      if (!page.next) break
      after = page.next
    }
    t.same(
      seen,
      full.queues.map((q) => q.apqn),
      `${d.name}: pages of 5 cover every queue once`,
    )
    answers.push({ facts: await d.bus.observeHostFacts(), adapters: await d.bus.observeAdapters(), pages })
  }
  for (const [i, d] of ds.entries()) t.same(answers[i], answers[0], `${d.name} answers as ${ds[0]!.name}`)
})

t.test('a page reads the attributes of its own queues only; host facts read no device; adapters no queue', async (t) => {
  for (const d of await drivers(t)) {
    d.reads.length = 0
    await d.bus.observeAdapters()
    t.same(
      d.reads.filter((p) => /\/\d\d\.[0-9a-f]{4}\//.test(p)),
      [],
      `${d.name}: adapters read no queue attribute`,
    )
    t.ok(
      d.reads.some((p) => p.endsWith('/card05/hwtype')),
      `${d.name}: adapters read the cards' attributes`,
    )
    d.reads.length = 0
    await d.bus.observeHostFacts()
    t.same(
      d.reads.filter((p) => /^\/sys\/(bus\/ap\/devices|devices\/ap)\/|^\/sys\/devices\/vfio_ap\/matrix\/[0-9a-f]{8}-/.test(p)),
      [],
      `${d.name}: host facts read no card, queue or matrix device attribute`,
    )
    d.reads.length = 0
    const page = await d.bus.observeQueues({ limit: 2, adapter: 7 })
    t.same(
      page.items.map((q) => q.apqn),
      ['07.0004', '07.0047'],
    )
    const queueDirs = new Set(d.reads.map((p) => /\/devices\/(?:ap\/card..\/)?(\d\d\.[0-9a-f]{4})\//.exec(p)?.[1]).filter((x) => x !== undefined))
    t.same([...queueDirs].sort(), ['07.0004', '07.0047'], `${d.name}: only the page's queues were read`)
  }
})

t.test('observeQueues refuses a limit that is not a positive integer', async (t) => {
  const bus = new SysfsBus(emulatorAccess(createHost({ profile: 'spec-fixture' })))
  for (const limit of [0, -1, 1.5, Number.NaN]) await t.rejects(bus.observeQueues({ limit }), RangeError, `limit ${limit}`)
})
