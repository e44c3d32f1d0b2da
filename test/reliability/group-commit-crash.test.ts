/**
 * Group commit never loses an acknowledged write (src/store/group-commit.ts): a process writes through the
 * SQLite store with 16 concurrent clients (transactions share commits) and prints each write the moment it is
 * acknowledged; it is SIGKILLed at a random moment, several times over one database. After each kill every
 * acknowledged write is stored, and every stored device has the event of its transaction (nothing half-stored).
 * A SIGKILL keeps what the operating system was given; a power loss also needs each commit flushed, which
 * `synchronous = FULL` does (test/store/group-commit.test.ts checks the setting).
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { projectRoot } from '../../src/paths.js'
import { applyMigrations } from '../../src/store/apply-migrations.js'
import { createStore } from '../../src/store/store.js'
import { freshDatabase } from '../store/pg-helper.js'
import { until } from '../scenario/rest-client.js'

const WRITER = path.join(projectRoot, 'test/reliability/group-commit-writer.mjs')
const SEED = Number(process.env.APMATRIX_CRASH_SEED ?? Date.now() % 2_147_483_647)

t.test('acknowledged group-committed writes survive SIGKILL', async (t) => {
  if (!fs.existsSync(path.join(projectRoot, 'dist/src/store/store.js'))) throw new Error('dist/ is missing: build first (npm run build)')
  t.comment(`seed ${SEED} (replay with APMATRIX_CRASH_SEED=${SEED})`)
  let rnd = SEED
  const next = () => (rnd = (rnd * 48271) % 2_147_483_647) / 2_147_483_647
  const db = await freshDatabase(t, 'sqlite')
  await applyMigrations(db.url)
  {
    const store = await createStore(db.url)
    await store.hosts.upsert({ name: 'local', driver: 'emulator', machineId: 'm', bootId: 'b', features: [], maxAdapterId: 255, maxDomainId: 255 })
    await store.close()
  }
  const acked = new Set<string>()
  for (let round = 1; round <= 3; round++) {
    const prefix = `d000000${round}-0000-4000-80`
    const child = spawn(process.execPath, [WRITER, db.url, prefix], { cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'] })
    const exited = new Promise<NodeJS.Signals | null>((r) => child.once('exit', (_code, signal) => r(signal)))
    t.teardown(() => void (child.exitCode === null && child.signalCode === null && child.kill('SIGKILL')))
    let buf = ''
    let count = 0
    child.stdout!.setEncoding('utf8')
    child.stdout!.on('data', (d: string) => {
      buf += d
      let i
      while ((i = buf.indexOf('\n')) >= 0) {
        acked.add(buf.slice(0, i))
        buf = buf.slice(i + 1)
        count++
      }
    })
    const stderr: string[] = []
    child.stderr!.on('data', (d: Buffer) => stderr.push(d.toString()))
    await until(`round ${round}: the writer to acknowledge writes`, async () => count >= 20, { timeoutMs: 30_000, everyMs: 5 })
    await new Promise((r) => setTimeout(r, Math.floor(next() * 300)))
    child.kill('SIGKILL')
    t.equal(await exited, 'SIGKILL', `round ${round}: the writer died of SIGKILL after ${count} acknowledged writes (${stderr.join('').slice(0, 300)})`)

    const store = await createStore(db.url)
    try {
      const stored = new Set((await store.mdevs.listAll('local')).map((m) => m.uuid))
      const lost = [...acked].filter((u) => !stored.has(u))
      t.same(lost, [], `round ${round}: every acknowledged write is stored (${acked.size} acknowledged so far, ${stored.size} stored)`)
      const events = new Set<string>()
      for (let since = 0; ; ) {
        const page = await store.events.list({ host: 'local', since, limit: 1000 })
        for (const e of page) events.add(e.name)
        if (page.length < 1000) break
        since = page.at(-1)!.seq
      }
      t.same(
        [...stored].filter((u) => !events.has(u)),
        [],
        `round ${round}: every stored device has the event of its transaction`,
      )
    } finally {
      await store.close()
    }
  }
})
