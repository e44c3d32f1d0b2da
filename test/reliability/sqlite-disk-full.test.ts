/**
 * SQLite on a full disk (issue 11 §2): the database of a real `apmatrix serve` lives on a small tmpfs this test
 * mounts; a filler file takes the free space and writes go on until the database cannot grow. A write that does
 * not fit answers 503 UNAVAILABLE with Retry-After (docs/api.md (Health and operations): the store cannot take
 * writes now, a client retries later), never 500 and never a crash; reads keep answering. Once the filler is
 * removed, writes are accepted again without a restart, every acknowledged write is stored whole (labels and
 * event), nothing refused is stored half, and `PRAGMA integrity_check` says ok.
 */
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { requireOrSkip } from '../helpers/required.js'
import { restClient, until } from '../scenario/rest-client.js'
import { readyLine, spawnCli } from './cli-process.js'
import { probe, sameLabels, table, type Probe } from './outage-kit.js'

interface ReadonlyDb {
  pragma(sql: string): unknown
  prepare(sql: string): { all(): unknown[] }
  close(): void
}
/** better-sqlite3 (a dependency of the SQLite adapter; it ships no types). */
const Database = createRequire(import.meta.url)('better-sqlite3') as new (file: string, opts: { readonly: boolean }) => ReadonlyDb

const HOST = '/v1/hosts/local'
const TMPFS_SIZE = '24m'
const MAX_WRITES = 4000
/** Free space left once the filler took the rest. */
const HEADROOM = 256 * 1024

/** Mounts a tmpfs at a scratch dir (unmounted and removed by `umount`), or says why it cannot. */
function mountTmpfs(): { dir: string; umount: () => void } | string {
  if (process.getuid?.() !== 0) return 'mounting a tmpfs needs root'
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-full-'))
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_SIZE},mode=0755`, 'tmpfs', dir], { encoding: 'utf8' })
  if (r.status !== 0) {
    fs.rmdirSync(dir)
    return `mount -t tmpfs failed: ${(r.stderr || r.error?.message || '').trim()}`
  }
  return {
    dir,
    umount: () => {
      if (spawnSync('umount', [dir]).status !== 0) spawnSync('umount', ['-l', dir])
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** Why no tmpfs can be mounted here (undefined: it can; a probe mount is made and removed). */
function tmpfsMissing(): string | undefined {
  const m = mountTmpfs()
  if (typeof m === 'string') return m
  m.umount()
  return undefined
}

requireOrSkip(
  t,
  'SQLite on a full disk: a write that does not fit is a clean 503, nothing corrupt, writes again once there is room',
  tmpfsMissing(),
  async (t) => {
    const mounted = mountTmpfs()
    if (typeof mounted === 'string') throw new Error(mounted)
    t.teardown(() => mounted.umount())
    const file = path.join(mounted.dir, 'apmatrix.db')
    const cli = spawnCli(t, ['serve'], {
      DATABASE_URL: `file:${file}`,
      APMATRIX_HTTP_ADDR: '127.0.0.1:0',
      APMATRIX_GRPC_ADDR: '127.0.0.1:0',
      APMATRIX_PROFILE: 'demo',
      APMATRIX_EMULATOR_ADDR: '',
      APMATRIX_LOG_LEVEL: 'error',
    })
    const rest = await readyLine(cli, /^apmatrix serving REST on (http:\/\/\S+)$/, 'the REST line')
    if (!rest) throw new Error(`the service did not start: ${cli.stderr.join('\n')}`)
    const call = restClient(rest[1]!)

    const uuid = (i: number) => `${i.toString(16).padStart(8, '0')}-0000-4000-8000-0000000000d1`
    const sent: Array<{ id: string; labels: Record<string, string>; p: Probe }> = []
    const long = 'x'.repeat(200)
    let n = 0
    const write = async () => {
      const id = uuid(++n)
      const labels: Record<string, string> = {}
      for (let k = 0; k < 16; k++) labels[`k${k}`] = `${long}-${n}`
      const p = await probe(call, 'write', 'POST', `${HOST}/mdevs`, { uuid: id, spec: { adapters: [], domains: [] }, labels })
      sent.push({ id, labels, p })
      return p
    }
    const known = await write()
    t.equal(known.status, 201, `a write before the disk fills (${known.status} ${JSON.stringify(known.body).slice(0, 200)})`)

    // Take the free space, then write until the database cannot grow.
    const filler = path.join(mounted.dir, 'filler')
    const fd = fs.openSync(filler, 'w')
    const chunk = Buffer.alloc(64 * 1024, 1)
    let filled = 0
    try {
      for (;;) filled += fs.writeSync(fd, chunk)
    } catch (e) {
      t.equal((e as NodeJS.ErrnoException).code, 'ENOSPC', `the filler took the free space (${filled >> 10} KiB)`)
    } finally {
      // Some room back, so the database grows a little before it cannot: the failure comes mid-stream.
      fs.ftruncateSync(fd, Math.max(0, filled - HEADROOM))
      fs.closeSync(fd)
    }
    const began = performance.now()
    let refused: Probe | undefined
    // Four at a time, so that writes share group commits (src/store/group-commit.ts) when the disk runs out.
    while (!refused && n < MAX_WRITES) refused = (await Promise.all([write(), write(), write(), write()])).find((p) => p.status !== 201)
    t.ok(refused, `a write failed once the disk was full (after ${sent.filter((s) => s.p.status === 201).length - 1} more writes)`)
    if (!refused) return
    t.equal(refused.status, 503, `it answers 503 (${refused.status} ${JSON.stringify(refused.body).slice(0, 300)})`)
    t.equal(refused.code, 'UNAVAILABLE', 'code UNAVAILABLE')
    t.ok(Number(refused.retryAfter) > 0, 'with Retry-After')
    t.match(refused.body?.detail, /full/i, `the detail says the disk is full: ${refused.body?.detail}`)
    const more: Probe[] = []
    for (let i = 0; i < 5; i++) more.push(await write())
    t.same(
      more.filter((p) => p.status !== 503).map((p) => `${p.status} ${JSON.stringify(p.body).slice(0, 200)}`),
      [],
      'further writes while full: 503 each',
    )
    const read = await probe(call, 'read', 'GET', `${HOST}/mdevs/${sent[0]!.id}`)
    t.equal(read.status, 200, 'reads answer while the disk is full')
    const readyz = await probe(call, 'readyz', 'GET', '/readyz')
    t.comment(`/readyz while full: ${readyz.status} (it probes with a read, which a full disk does not stop)`)
    t.equal(cli.dead, false, 'the service did not exit')

    fs.rmSync(filler)
    const freedAt = performance.now()
    let recoveredAt = Number.NaN
    await until(
      'a write to be accepted after the space came back',
      async () => {
        const p = await write()
        if (p.status === 201) recoveredAt = p.endedAt
        return p.status === 201
      },
      { timeoutMs: 30_000, everyMs: 100 },
    )
    const recoveryMs = recoveredAt - freedAt
    t.ok(recoveryMs <= 10_000, `writes accepted again ${Math.round(recoveryMs)} ms after space was freed, without a restart`)
    const all = sent.map((s) => s.p)
    t.same(
      all.filter((p) => p.status !== 201 && p.status !== 503).map((p) => `${p.status} ${JSON.stringify(p.body).slice(0, 200)}`),
      [],
      `every write answered 201 or 503 (${all.length})`,
    )
    const maxLatency = Math.max(...all.map((p) => p.endedAt - p.startedAt))

    cli.proc.kill('SIGTERM')
    const exit = await cli.exited
    t.same(exit, { code: 0, signal: null }, 'the service stops cleanly')

    const db = new Database(file, { readonly: true })
    t.teardown(() => db.close())
    t.same(db.pragma('integrity_check'), [{ integrity_check: 'ok' }], 'PRAGMA integrity_check: ok')
    const rows = new Map<string, Record<string, string>>()
    for (const r of db.prepare(`SELECT uuid FROM "Mdev" WHERE host = 'local'`).all() as Array<{ uuid: string }>) rows.set(r.uuid, {})
    for (const r of db.prepare(`SELECT uuid, key, value FROM "MdevLabel" WHERE host = 'local'`).all() as Array<{ uuid: string; key: string; value: string }>) {
      const l = rows.get(r.uuid)
      if (l) l[r.key] = r.value
    }
    const defined = new Set(
      (db.prepare(`SELECT name FROM "Event" WHERE host = 'local' AND type = 'MdevDefined'`).all() as Array<{ name: string }>).map((r) => r.name),
    )
    const acked = sent.filter((s) => s.p.status === 201)
    const lost = acked.filter((s) => !sameLabels(rows.get(s.id), s.labels))
    t.same(
      lost.map((s) => s.id),
      [],
      `every acknowledged write is stored with all its labels (${acked.length})`,
    )
    t.same(
      sent.filter((s) => s.p.status === 503 && rows.has(s.id)).map((s) => s.id),
      [],
      'no refused write is stored',
    )
    t.same(
      [...rows.keys()].filter((id) => !defined.has(id)),
      [],
      `every stored device (${rows.size}) has its MdevDefined event`,
    )
    t.comment(
      `SQLite disk full (tmpfs ${TMPFS_SIZE}):\n${table(
        ['faults injected', 'writes tried', '201', '503', 'other', 'max latency ms', 'recovery ms', 'lost'],
        [
          [
            `disk filled (${filled >> 10} KiB filler, ${HEADROOM >> 10} KiB left)`,
            all.length,
            acked.length,
            all.filter((p) => p.status === 503).length,
            all.filter((p) => p.status !== 201 && p.status !== 503).length,
            Math.round(maxLatency),
            Math.round(recoveryMs),
            lost.length,
          ],
        ],
      )}\nfilled in ${Math.round(freedAt - began)} ms`,
    )
  },
)
