/**
 * Retention soak (docs/api.md (Retention)): a simulated month of one host's life in virtual time, on SQLite,
 * with the service, the reconciler, the event hub, the read cache and retention wired as `apmatrix serve` wires
 * them. The store's clock and the emulator's clock are virtual and move together; every change goes through
 * the service (the code path below the transports) and every pass is the real reconciler's:
 *
 * - drift: root takes a host adapter or domain from the default drivers, or gives it back, behind the
 *   service's back (the reconciler puts the masks back);
 * - hot plugs: a guest holds a device while a domain is plugged into it and out again (PATCH), an adapter is
 *   configured off and on, short-lived devices are created (with an Idempotency-Key, retried) and deleted;
 * - reboots: the emulated host reboots (kernel state lost) and the reconciler restores it;
 * - operators relabel a fleet of stopped definitions every half hour (one event per device).
 *
 * That is about 20k events of the service and the reconciler in the month (each costs a bus observation, a
 * plan and a transaction: a month of them at a realistic pace would not fit in minutes); host telemetry events
 * (type `HostTelemetry`, appended in bulk each step) make up the rest of 100k events on host `local`.
 *
 * A retention pass runs every simulated hour. The test prints, per simulated day, what each retained table
 * holds, the database's size on disk and the process's heap after a full GC, and asserts that they level off:
 * past the first retention window no table holds more than its limits allow, and neither the database file nor
 * the heap keeps growing. Two watchers run throughout: one is given every event (in order, never ended, at the
 * log's end when the month is over), one is given none and lives on bookmarks. About two minutes of wall time;
 * it belongs to the reliability suite (test/reliability/, npm run test:reliability), not to npm test.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import v8 from 'node:v8'
import vm from 'node:vm'
import t from 'tap'
import { ApmatrixError } from '../../src/domain/errors.js'
import { EventHub } from '../../src/events/hub.js'
import { StaticHostRegistry } from '../../src/hosts/managed-host.js'
import { LocalEmulatedHost } from '../../src/hosts/local-emulated-host.js'
import { Reconciler } from '../../src/reconciler/reconciler.js'
import { ApmatrixService } from '../../src/service/index.js'
import { parseDatabaseUrl } from '../../src/store/config.js'
import { Retention, type RetentionOptions } from '../../src/store/retention.js'
import { createStore } from '../../src/store/store.js'
import { createPrismaClient } from '../../src/store/client.js'
import { applyMigrations } from '../../src/store/apply-migrations.js'

v8.setFlagsFromString('--expose_gc')
const gc = vm.runInNewContext('gc') as () => void

const MIN = 60_000
const HOUR = 60 * MIN
const DAY = 24 * HOUR
const DAYS = 30
/** Events the month stores on host `local`. */
const EVENTS = 100_000

/** What the soak keeps: the default event policy; the others smaller than their defaults, so they bind within a month. */
const POLICY: Omit<RetentionOptions, 'store' | 'intervalMs'> = {
  events: { maxCount: 100_000, maxAgeMs: 7 * DAY },
  audit: { maxCount: 20_000, maxAgeMs: 7 * DAY },
  journal: { maxCount: 2_000, maxAgeMs: 2 * DAY },
  idempotency: { maxCount: 500 },
}
const IDEMPOTENCY_TTL_MS = DAY
/** A pass also runs without a reason this often (the service's resync; rarer than its default, to fit the wall time). */
const RESYNC_MS = 6 * HOUR

/** The relabelled fleet: stopped definitions, one APQN each, on adapters the host's configuration does not have. */
const CHURN: Array<[number, number]> = Array.from({ length: 4 }, (_, i) => 8 + i).flatMap((a) => [4, 5, 71].map((d): [number, number] => [a, d]))
/** The type of the telemetry events that make up the month's volume beside those of the service and the reconciler. */
const FILLER = 'HostTelemetry'
const A = 'aaaaaaaa-0000-4000-8000-00000000000a'
const B = 'bbbbbbbb-0000-4000-8000-00000000000b'

/** A small deterministic PRNG (mulberry32): the same month every run. */
function prng(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let x = Math.imul(s ^ (s >>> 15), 1 | s)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

interface Sample {
  day: number
  events: number
  audit: number
  journal: number
  idempotency: number
  floor: number
  lastSeq: number
  dbBytes: number
  heapMB: number
  rssMB: number
}

t.test('a simulated month: the database and the heap level off, watchers miss nothing', async (t) => {
  // The database in memory-backed files where the machine has them: the soak measures size and growth, and a
  // month of durable commits (one disk flush each) would take hours of wall time on a disk.
  const dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'apmatrix-soak-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'soak.db')
  const db = { url: `file:${file}` }
  await applyMigrations(db.url)
  let now = Date.parse('2026-01-01T00:00:00Z')
  const clock = () => new Date(now)
  const store = await createStore(db.url, { clock })
  t.teardown(() => store.close())
  // A second connection that only counts rows for the figures.
  const probe = await createPrismaClient(parseDatabaseUrl(db.url))
  t.teardown(() => probe.db.$disconnect())
  const host = new LocalEmulatedHost({ name: 'local', profile: 'spec-fixture', realtime: false })
  t.teardown(() => host.close())
  const hosts = new StaticHostRegistry([host])
  const hub = new EventHub({ source: store.events, pollIntervalMs: 100 })
  t.teardown(() => hub.close())
  // The emulator's time moves with the store's: a drain waits in virtual time.
  const advance = (ms: number) => {
    now += ms
    host.host.advance(ms)
  }
  let service: ApmatrixService | undefined
  const reconciler = new Reconciler({
    store,
    hosts,
    holder: 'soak',
    drainTimeoutMs: 2_000,
    sleep: async (ms) => advance(ms),
    onEvents: () => hub.notify(),
    afterStatusWrite: () => service!.refreshReadCache(),
  })
  service = new ApmatrixService({
    store,
    hosts,
    reconciler: { enqueue: () => hub.notify() },
    hub,
    clock,
    readMaxStalenessMs: 1000,
    idempotencyTtlMs: IDEMPOTENCY_TTL_MS,
  })
  await service.syncHosts()
  await hub.start()
  await service.startReadCache()
  t.teardown(() => service!.stopReadCache())
  const retention = new Retention({ store, ...POLICY, intervalMs: HOUR })
  const ctx = { actor: 'soak' }

  const pass = async () => {
    await reconciler.reconcile('local')
    counts.passes++
  }

  // Watchers for the whole month: one that sees everything, one that sees nothing and lives on bookmarks.
  const watchedFrom = await store.events.lastSeq()
  const seen = { count: 0, last: watchedFrom, ordered: true, ended: null as Error | null }
  const all = await service.watch(
    {},
    ({ event }) => {
      if (event.seq <= seen.last) seen.ordered = false
      seen.last = event.seq
      seen.count++
    },
    (err) => (seen.ended = err),
  )
  t.teardown(() => all.close())
  const idle = { bookmarks: 0, position: 0, events: 0, ended: null as Error | null }
  const quiet = await service.watch(
    { host: 'elsewhere', bookmarkSeconds: 1 },
    () => void idle.events++,
    (err) => (idle.ended = err),
    (position) => {
      idle.bookmarks++
      idle.position = position
    },
  )
  t.teardown(() => quiet.close())

  // The host's desired state: masks, device A (a guest holds it; domains hot plugged in and out), and a fleet
  // of stopped definitions (owner `fleet`) on adapters outside the configuration that operators relabel.
  const fleet = (rev: number) => ({
    owner: 'fleet',
    masks: { apmask: '-5,-6,-8-11', aqmask: '-4,-5,-71' },
    mdevs: CHURN.map(([adapter, domain], i) => ({
      uuid: `f1ee7000-0000-4000-8000-${String(i).padStart(12, '0')}`,
      spec: { adapters: [adapter], domains: [domain], state: 'stopped' as const },
      labels: { rev: String(rev) },
    })),
  })
  await service.applyDesired('local', fleet(0), ctx)
  await service.createMdev('local', { uuid: A, spec: { adapters: [5], domains: [4], controlDomains: [4] } }, ctx)
  await service.createMdev('local', { uuid: B, spec: { adapters: [6], domains: [4] } }, ctx)
  await reconciler.reconcile('local')

  const rnd = prng(11)
  const start = await store.events.lastSeq()
  const counts = {
    passes: 0,
    applies: 0,
    drift: 0,
    refusedByKernel: 0,
    hotPlugs: 0,
    adapterToggles: 0,
    reboots: 0,
    creates: 0,
    retentionPasses: 0,
    retentionBatches: 0,
  }
  const samples: Sample[] = []
  const sample = async (day: number): Promise<Sample> => {
    gc()
    const [events, audit, journal, idempotency] = await Promise.all([
      probe.db.event.count(),
      probe.db.auditRecord.count(),
      probe.db.journalEntry.count(),
      probe.db.idempotencyKey.count(),
    ])
    const dbBytes = ['', '-wal', '-shm'].reduce((n, x) => n + (fs.existsSync(file + x) ? fs.statSync(file + x).size : 0), 0)
    const m = process.memoryUsage()
    return {
      day,
      events,
      audit,
      journal,
      idempotency,
      floor: await store.events.floor(),
      lastSeq: await store.events.lastSeq(),
      dbBytes,
      heapMB: +(m.heapUsed / 2 ** 20).toFixed(1),
      rssMB: +(m.rss / 2 ** 20).toFixed(1),
    }
  }
  samples.push(await sample(0))

  // Every step (half an hour) the operators relabel the fleet; host telemetry fills the rest of the day's
  // share of the month's volume.
  const stepMs = 30 * MIN
  const stepsPerDay = DAY / stepMs
  let realEvents = 0
  let fillerEvents = 0
  /** True with the probability that makes something happen `n` times a day on average. */
  const daily = (n: number) => rnd() < n / stepsPerDay
  const t0 = now
  let nextResync = now + RESYNC_MS
  let nextRetention = now + HOUR
  let guestOn = false
  const began = performance.now()
  for (let day = 1; day <= DAYS; day++) {
    while (now < t0 + day * DAY) {
      let reconcile = false
      try {
        const before = await store.events.lastSeq()
        await service.applyDesired('local', fleet(++counts.applies), ctx)
        if (daily(1 / 3)) {
          await service.reboot('local', ctx)
          guestOn = false
          counts.reboots++
          // The reconciler restores the host before anything else happens to it.
          await pass()
        }
        if (daily(6)) {
          // Root takes a host adapter or domain from the default drivers, or gives it back, behind the service's back.
          const [file, id] = rnd() < 0.5 ? ['apmask', 7] : ['aqmask', rnd() < 0.5 ? 171 : 255]
          await service.writeSysfs('local', `/sys/bus/ap/${file}`, `${rnd() < 0.5 ? '-' : '+'}${id}\n`, ctx).catch((e: unknown) => {
            if (!(e instanceof ApmatrixError && e.errno)) throw e
            counts.refusedByKernel++
          })
          counts.drift++
          reconcile = true
        }
        if (daily(6)) {
          // A guest holds A; a domain is hot plugged into it, or out of it again.
          if (!guestOn) {
            await service.openGuest('local', A, 'vm1', ctx)
            guestOn = true
          }
          const m = await service.getMdev('local', A)
          await service.patchMdev('local', A, { spec: { domains: m.spec.domains.includes(71) ? [4] : [4, 71] } }, ctx)
          counts.hotPlugs++
          reconcile = true
        }
        if (daily(2)) {
          await service.hardware('local', { action: 'config-off', apid: 6 }, ctx)
          await pass()
          advance(MIN)
          await service.hardware('local', { action: 'config-on', apid: 6 }, ctx)
          counts.adapterToggles++
          reconcile = true
        }
        if (daily(6)) {
          // A short-lived device, created with an Idempotency-Key (and retried once, as a client does), then deleted.
          const uuid = `cccccccc-0000-4000-8000-${String(counts.creates).padStart(12, '0')}`
          const input = { uuid, spec: { adapters: [6], domains: [71] } }
          for (let i = 0; i < 2; i++) await service.createMdev('local', input, { ...ctx, idempotencyKey: `k-${counts.creates}` })
          await pass()
          await service.deleteMdev('local', uuid, { ...ctx, force: true })
          counts.creates++
          reconcile = true
        }
        if (reconcile || now >= nextResync) {
          await pass()
          if (now >= nextResync) nextResync += RESYNC_MS
        }
        if (now >= nextRetention) {
          nextRetention += HOUR
          counts.retentionPasses++
          counts.retentionBatches += (await retention.runOnce()).batches
        }
        realEvents += (await store.events.lastSeq()) - before
        // What the step still owes to the month's volume, as host telemetry in one append.
        const owed = Math.ceil((EVENTS * (now + stepMs - t0)) / (DAYS * DAY)) - (realEvents + fillerEvents)
        if (owed > 0) {
          await store.events.appendMany(Array.from({ length: owed }, (_, i) => ({ host: 'local', kind: 'host', name: 'local', type: FILLER, data: { i } })))
          fillerEvents += owed
        }
      } catch (e) {
        t.fail(`step at ${new Date(now).toISOString()}: ${(e as Error).message}`)
        throw e
      }
      advance(stepMs)
    }
    samples.push(await sample(day))
    const x = samples.at(-1)!
    t.comment(
      `day ${String(day).padStart(2)}: events ${x.events} (floor ${x.floor}, newest ${x.lastSeq}), audit ${x.audit}, journal ${x.journal}, idempotency keys ${x.idempotency}, db ${(x.dbBytes / 2 ** 20).toFixed(1)} MiB, heap ${x.heapMB} MiB, rss ${x.rssMB} MiB`,
    )
  }
  const wallS = (performance.now() - began) / 1000
  const newest = await store.events.lastSeq()
  const stored = newest - start
  t.comment(
    `month: ${stored} events on host local (${realEvents} from the service and the reconciler, ${fillerEvents} ${FILLER}) in ${wallS.toFixed(0)} s of wall time; ${JSON.stringify(counts)}`,
  )
  t.comment('figures (retention: events 100000 / 7d, audit 20000 / 7d, journal 2000 / 2d, idempotency keys 500 / 1d):')
  t.comment('day | events kept | floor | newest seq | audit | journal | idempotency keys | db MiB | heap MiB (after GC) | rss MiB')
  for (const x of samples.filter((x) => x.day % 5 === 0 || x.day === 8 || x.day === DAYS))
    t.comment(
      `${x.day} | ${x.events} | ${x.floor} | ${x.lastSeq} | ${x.audit} | ${x.journal} | ${x.idempotency} | ${(x.dbBytes / 2 ** 20).toFixed(1)} | ${x.heapMB} | ${x.rssMB}`,
    )
  t.comment(`without retention the event log would hold ${newest} events; it holds ${samples.at(-1)!.events}`)

  t.ok(stored >= EVENTS, `${stored} events in the month`)
  t.ok(realEvents > 0 && counts.reboots > 0 && counts.drift > 0 && counts.hotPlugs > 0, 'drift, reboots and hot plugs happened')

  // Bounded: past the first retention window (7 days, plus the hour between passes) each table holds at most
  // what its limits allow, and the database and the heap stop growing.
  const settled = samples.filter((x) => x.day >= 8)
  const perDay = EVENTS / DAYS
  for (const x of settled) {
    t.ok(x.events <= (7 + 2 / 24) * perDay + CHURN.length + 1, `day ${x.day}: ${x.events} events, at most 7 days' worth`)
    t.ok(x.audit <= POLICY.audit.maxCount, `day ${x.day}: ${x.audit} audit records`)
    t.ok(x.journal <= POLICY.journal.maxCount, `day ${x.day}: ${x.journal} journal entries`)
    t.ok(x.idempotency <= POLICY.idempotency.maxCount, `day ${x.day}: ${x.idempotency} idempotency keys`)
  }
  const early = settled.filter((x) => x.day <= 15)
  const late = settled.filter((x) => x.day > 15)
  const maxOf = (xs: Sample[], f: (x: Sample) => number) => Math.max(...xs.map(f))
  const dbEarly = maxOf(early, (x) => x.dbBytes)
  const dbLate = maxOf(late, (x) => x.dbBytes)
  t.ok(
    dbLate <= dbEarly * 1.1,
    `database: at most ${(dbLate / 2 ** 20).toFixed(1)} MiB in days 16-30 against ${(dbEarly / 2 ** 20).toFixed(1)} MiB in days 8-15`,
  )
  const heapEarly = maxOf(early, (x) => x.heapMB)
  const heapLate = maxOf(late, (x) => x.heapMB)
  t.ok(heapLate <= heapEarly * 1.1 + 8, `heap after GC: at most ${heapLate} MiB in days 16-30 against ${heapEarly} MiB in days 8-15`)

  // The log is a contiguous suffix above its floor; the read cache holds what the store holds.
  const floor = await store.events.floor()
  const [oldest] = await store.events.list({ since: 0, limit: 1 })
  t.ok(floor > 0 && oldest!.seq > floor, `compacted up to seq ${floor}; the oldest kept is ${oldest!.seq}`)
  t.equal((await service.getMdev('local', A)).metadata.resourceVersion, (await store.mdevs.get('local', A)).resourceVersion, 'the read cache is current')

  // The watchers: one got every event of the month in order and is still open; the idle one lives on bookmarks.
  await hub.flush()
  const until = Date.now() + 10_000
  while ((seen.last < newest || idle.position < newest) && Date.now() < until) await new Promise((r) => setTimeout(r, 20))
  t.equal(seen.ended, null, 'the watcher of everything was never ended')
  t.ok(seen.ordered, 'its events came in seq order')
  t.equal(seen.count, newest - watchedFrom, `it was given every one of the ${newest - watchedFrom} events`)
  t.equal(seen.last, newest)
  t.equal(idle.ended, null, 'the idle watcher was never ended')
  t.equal(idle.events, 0)
  t.ok(idle.bookmarks > 0, `${idle.bookmarks} bookmarks`)
  t.equal(idle.position, newest, 'its last bookmark is the end of the log')
})
