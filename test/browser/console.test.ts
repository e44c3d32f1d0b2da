/**
 * The web console (docs/console.md) in a real Chromium against the whole service (host `local` emulated
 * in process with the `demo` profile, SQLite, real sockets): the grid draws what the API answers for every
 * APQN, plan-then-apply defines a device that turns Ready and recolours its cells live, a manual unbind shows
 * the filtered mark, a conflict is drawn on its cell, a lost event stream resumes without a gap, and (on a
 * second service with static tokens) a tenant sees only its own devices, live.
 * Screenshots of each step: test-artifacts/browser/. The page is checked by what it draws (canvas pixels)
 * and by its model (window.__console), never by timing.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import type { Page } from 'playwright-core'
import { KIND_COLORS, deviceColor } from '../../web/console/src/model.js'
import { tokenDigest } from '../../src/auth/static-tokens.js'
import { requireOrSkip } from '../helpers/required-tools.js'
import { HOST, startScenario, type Scenario } from '../scenario/scenario-fixture.js'
import { crossProduct, isReady, until } from '../scenario/rest-client.js'
import { freshDatabase } from '../store/pg-helper.js'
import { cellState, chromiumMissing, ensureConsoleBuilt, launch, pixel, shot, startCutProxy, waitPage } from './browser-fixture.js'

const A = 'a1111111-0000-4000-8000-000000000001'
const B = 'b2222222-0000-4000-8000-000000000002'
const C = 'c3333333-0000-4000-8000-000000000003'

async function must(s: Scenario, method: string, path: string, body?: unknown): Promise<any> {
  const r = await s.call(method, path, body === undefined ? {} : { body })
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.text}`)
  return r.body
}

/** Every queue of the host, from the API. */
async function queues(s: Scenario): Promise<any[]> {
  const out: any[] = []
  let token = ''
  do {
    const page = await must(s, 'GET', `${HOST}/queues?limit=500${token ? `&pageToken=${encodeURIComponent(token)}` : ''}`)
    out.push(...page.items)
    token = page.nextPageToken ?? ''
  } while (token)
  return out
}

/** The owner colour the legend gives each APQN, from the API's answers (queues, masks, devices). */
async function expectedCells(s: Scenario): Promise<Map<string, { kind: string; device: string | null; color: string }>> {
  const [qs, masks, mdevs, bus] = await Promise.all([
    queues(s),
    must(s, 'GET', `${HOST}/masks`),
    must(s, 'GET', `${HOST}/mdevs`),
    must(s, 'GET', `${HOST}/bus-mdevs`),
  ])
  const uuids = [...new Set([...mdevs.items.map((m: any) => m.metadata.uuid), ...bus.items.map((b: any) => b.uuid)])].sort()
  const apm = new Set(masks.status.apmaskIds)
  const aqm = new Set(masks.status.aqmaskIds)
  const out = new Map<string, { kind: string; device: string | null; color: string }>()
  for (const q of qs) {
    if (q.owner) out.set(q.apqn, { kind: 'device', device: q.owner, color: deviceColor(uuids.indexOf(q.owner)) })
    else if (apm.has(q.apid) && aqm.has(q.apqi)) out.set(q.apqn, { kind: 'host', device: null, color: KIND_COLORS.host })
    else out.set(q.apqn, { kind: 'free', device: null, color: KIND_COLORS.free })
  }
  return out
}

async function checkGrid(t: Test, s: Scenario, page: Page, label: string): Promise<void> {
  const want = await expectedCells(s)
  t.equal(want.size, 36, `${label}: the demo host has 6 x 6 queues`)
  const wrong: string[] = []
  for (const [apqn, w] of want) {
    const [a, d] = apqn.split('.').map((x) => Number.parseInt(x, 16)) as [number, number]
    const got = await cellState(page, a, d)
    const px = await pixel(page, a, d, 'center')
    if (got?.kind !== w.kind || got?.device !== w.device || px !== w.color)
      wrong.push(`${apqn}: API ${w.kind}/${w.device ?? '-'}/${w.color}, page ${got?.kind}/${got?.device ?? '-'}, drawn ${px}`)
  }
  t.same(wrong, [], `${label}: every APQN drawn in its owner's colour`)
}

/** Waits until the page's model and the canvas agree with the API on every APQN (the page follows events). */
async function waitGrid(s: Scenario, page: Page, what: string): Promise<void> {
  await until(
    what,
    async () => {
      const want = await expectedCells(s)
      for (const [apqn, w] of want) {
        const [a, d] = apqn.split('.').map((x) => Number.parseInt(x, 16)) as [number, number]
        const got = await cellState(page, a, d)
        if (got?.kind !== w.kind || got?.device !== w.device || (await pixel(page, a, d)) !== w.color) return false
      }
      return true
    },
    {
      timeoutMs: 20_000,
      describe: async () => {
        const want = await expectedCells(s)
        const out: string[] = []
        for (const [apqn, w] of want) {
          const [a, d] = apqn.split('.').map((x) => Number.parseInt(x, 16)) as [number, number]
          const got = await cellState(page, a, d)
          const px = await pixel(page, a, d)
          if (got?.kind !== w.kind || got?.device !== w.device || px !== w.color)
            out.push(`${apqn}: API ${w.kind}/${w.device}/${w.color} page ${got?.kind}/${got?.device} drawn ${px}`)
        }
        return out
      },
    },
  )
}

requireOrSkip(t, 'web console in Chromium', chromiumMissing(), async (t) => {
  ensureConsoleBuilt()
  const db = await freshDatabase(t, 'sqlite')
  const s = await startScenario(t, db, { APMATRIX_PROFILE: 'demo', APMATRIX_RESYNC_MS: '1000' })
  // Adapters 5, 6, 7 leave the host; A and B take some of their APQNs; the rest of 7 stays free.
  await must(s, 'PUT', `${HOST}/masks`, { apmask: '-5,-6,-7' })
  await must(s, 'POST', `${HOST}/mdevs`, { uuid: A, spec: { adapters: [5], domains: [1, 2], controlDomains: [1, 0x0b] } })
  await must(s, 'POST', `${HOST}/mdevs`, { uuid: B, spec: { adapters: [6], domains: [4, 0x47] } })
  await s.waitReady(A)
  await s.waitReady(B)

  const browser = await launch(t)
  const page = await browser.newPage({ viewport: { width: 1366, height: 768 } })
  const errors: string[] = []
  page.on('pageerror', (e) => errors.push(e.message))
  // Failed loads are errors, except while the last test has cut the connection on purpose.
  let cutting = false
  page.on('console', (m) => {
    if (m.type() === 'error' && !cutting) errors.push(m.text())
  })
  // Through a relay the last test cuts.
  const relay = await startCutProxy(t, s.svc.httpUrl)
  await page.goto(`${relay.url}/ui`)
  await waitPage(page, 'the queues to be read', () => (globalThis as any).__console?.queuesLoaded, null)
  await waitPage(page, 'the event stream', () => (globalThis as any).__console.streamState() === 'live', null)
  await page.evaluate(() => {
    ;(globalThis as any).__sameDocument = true
  })

  await t.test('the grid shows the demo host as the API answers it, for every APQN', async (t) => {
    await checkGrid(t, s, page, 'demo host')
    t.match(await page.textContent('#hostline'), /6 adapters x 6 domains/)
    t.match(await page.textContent('#devices'), /a1111111/, 'device A is listed')
    t.match(await page.textContent('#devices'), /Ready/, 'with its Ready condition')
    // Keyboard: focus the grid, move with the arrows, Enter selects the device under the cursor.
    await page.focus('#grid')
    await page.keyboard.press('ArrowDown')
    await page.keyboard.press('ArrowDown')
    await page.keyboard.press('ArrowDown')
    t.match(await page.textContent('#cellinfo'), /05\.0001/, 'the cursor is on 05.0001 after three rows down')
    t.match(await page.textContent('#cellinfo'), /matrix device a1111111/)
    await page.keyboard.press('Enter')
    t.match(await page.textContent('#devdetail'), /control domains\s*0x1,0xb/, 'selecting it shows its control domains')
    await page.keyboard.press('ArrowDown')
    t.equal(await pixel(page, 5, 2, 'edge'), '#000000', 'its cells are ringed on the grid')
    t.not(await pixel(page, 6, 0x47, 'edge'), '#000000', 'the cells of another device are not')
    await shot(page, '01-demo-grid')
    await page.click(`#devices button[data-uuid="${A}"]`)
    t.equal(
      await pixel(page, 5, 2, 'edge'),
      KIND_COLORS.host === (await cellState(page, 5, 2)).color ? KIND_COLORS.host : (await cellState(page, 5, 2)).color,
      'a second click clears the highlight',
    )
  })

  await t.test('plan-then-apply defines a device: the plan is drawn, then the device turns Ready and its cells change colour live', async (t) => {
    t.equal(await pixel(page, 7, 1), KIND_COLORS.free, '07.0001 is free before')
    // Drag a rectangle over adapter 7 x domains 1..5 (the first four columns).
    const box = (await page.locator('#grid').boundingBox())!
    const from = (await page.evaluate(() => (globalThis as any).__console.center(7, 1))) as { x: number; y: number }
    const to = (await page.evaluate(() => (globalThis as any).__console.center(7, 5))) as { x: number; y: number }
    await page.mouse.move(box.x + from.x, box.y + from.y)
    await page.mouse.down()
    await page.mouse.move(box.x + to.x, box.y + to.y, { steps: 4 })
    await page.mouse.up()
    t.equal(await page.inputValue('#p-adapters'), '7')
    t.equal(await page.inputValue('#p-domains'), '1,2,4,5')
    const uuid = await page.inputValue('#p-uuid')
    t.match(uuid, /^[0-9a-f-]{36}$/, 'a new uuid was proposed')
    await page.click('#p-plan')
    await waitPage(page, 'the plan', () => /admissible/.test((globalThis as any).document.getElementById('planout').textContent ?? ''), null)
    t.match(await page.textContent('#planout'), /claims 4 APQNs/)
    t.ok((await cellState(page, 7, 1)).claimed, '07.0001 is claimed by the plan')
    t.notOk((await cellState(page, 7, 0x0a)).claimed, '07.000a is not')
    t.equal(await pixel(page, 7, 1, 'claimRing'), '#1d4ed8', 'the claim is drawn on the cell')
    t.equal((await must(s, 'GET', `${HOST}/mdevs`)).items.length, 2, 'planning stored nothing')
    await shot(page, '02-plan')

    await page.click('#p-apply')
    const ready = await s.waitReady(uuid)
    t.same(ready.status.matrix, crossProduct([7], [1, 2, 4, 5]))
    await waitGrid(s, page, 'the page to draw the new device')
    const c = await cellState(page, 7, 1)
    t.equal(c.device, uuid)
    t.equal(await pixel(page, 7, 1), c.color, '07.0001 is drawn in the new device colour')
    t.not(c.color, KIND_COLORS.free)
    await waitPage(
      page,
      'the Ready condition in the list',
      (u) => /Ready/.test((globalThis as any).document.querySelector(`tr[data-uuid="${u}"]`)?.textContent ?? ''),
      uuid,
    )
    t.ok(await page.evaluate(() => (globalThis as any).__sameDocument), 'no reload')
    await checkGrid(t, s, page, 'after apply')
    await shot(page, '03-applied')
  })

  await t.test('a conflict shows its violation, with its fix, on the right cell', async (t) => {
    await page.click('#p-clear')
    await page.fill('#p-uuid', C)
    await page.fill('#p-adapters', '5')
    await page.fill('#p-domains', '1')
    await page.fill('#p-control', '')
    await page.click('#p-plan')
    await waitPage(page, 'the violations', () => /violations/.test((globalThis as any).document.getElementById('planout').textContent ?? ''), null)
    const plan = await must(s, 'POST', `${HOST}/plan?view=full`, { uuid: C, spec: { adapters: [5], domains: [1] } })
    const onCells = plan.violations.filter((v: any) => v.apqn)
    t.ok(onCells.length > 0, 'the API reports a violation on an APQN')
    for (const v of onCells) {
      const [a, d] = v.apqn.split('.').map((x: string) => Number.parseInt(x, 16))
      t.ok((await cellState(page, a, d)).violations.length > 0, `violation on ${v.apqn} in the page`)
      t.equal(await pixel(page, a, d, 'edge'), '#d00000', `drawn on ${v.apqn}`)
    }
    t.equal(onCells[0].apqn, '05.0001')
    t.same((await cellState(page, 5, 2)).violations, [], '05.0002 has none')
    t.not(await pixel(page, 5, 2, 'edge'), '#d00000', 'and none is drawn there')
    t.match(await page.textContent('#planout'), /APQN_IN_USE/)
    t.match(await page.textContent('#planout'), /fix:/)
    t.ok(await page.isDisabled('#p-apply'), 'apply is disabled')
    await shot(page, '04-conflict')
    await page.click('#p-clear')
  })

  await t.test('a manual unbind through the emulator shows the filtered mark', async (t) => {
    // Adapter 6 checkstopped, then root unbinds 06.0004: the adapter leaves B's guest view and cannot come back.
    await must(s, 'POST', `${HOST}/emulator/hardware`, { action: 'checkstop', apid: 6 })
    await s.call('POST', `${HOST}/emulator/sysfs`, { body: { path: '/sys/bus/ap/drivers/vfio_ap/unbind', value: '06.0004\n' } })
    await waitPage(page, 'the filtered mark on 06.0004', () => (globalThis as any).__console.cell(6, 4)?.marks.filtered, null)
    const m = await s.waitMdev(B, 'guestMatrix without adapter 6', (m) => m.status.guestMatrix.length === 0)
    t.same(m.status.guestMatrix, [])
    for (const d of [4, 0x47]) {
      const c = await cellState(page, 6, d)
      t.match(c.marks.filtered, /QueueNotBound|AdapterFiltered|guestMatrix/, `06.${d} filtered, with the reason`)
      t.equal(c.marks.down, 'checkstopped')
      await waitPage(page, `the filtered mark drawn on 06.${d}`, (d) => (globalThis as any).__console.cell(6, d)?.marks.filtered, d)
      t.equal(await pixel(page, 6, d, 'topRight'), '#d00000', 'filtered mark drawn')
      t.equal(await pixel(page, 6, d, 'bottomRight'), '#000000', 'checkstop mark drawn')
      t.equal(await pixel(page, 6, d), c.color, 'the owner colour stays in the centre')
    }
    await shot(page, '05-filtered')
  })

  await t.test('a lost event stream shows, resumes and catches up without a gap', async (t) => {
    cutting = true
    relay.cut()
    await waitPage(page, 'the lost connection', () => (globalThis as any).__console.streamState() !== 'live', null)
    t.match(await page.textContent('#stream'), /lost|connecting/)
    await shot(page, '06-offline')
    // While the page is away: a new device on 07.000a.
    await must(s, 'POST', `${HOST}/mdevs`, { uuid: C, spec: { adapters: [7], domains: [0x0a] } })
    await s.waitReady(C)
    relay.restore()
    await waitPage(page, 'the stream back', () => (globalThis as any).__console.streamState() === 'live', null)
    cutting = false
    await waitPage(page, '07.000a owned by C', (c) => (globalThis as any).__console.cell(7, 0x0a)?.device === c, C)
    await waitGrid(s, page, 'the page to catch up')
    const seqs = (await page.evaluate(() => (globalThis as any).__console.eventSeqs())) as number[]
    const gaps = seqs.slice(1).filter((q, i) => q !== seqs[i]! + 1)
    t.same(gaps, [], `events ${seqs[0]}..${seqs.at(-1)} arrived in order, without a gap or a duplicate`)
    const stored = await s.events()
    const last = seqs.at(-1)!
    t.ok(
      stored.filter((e) => e.seq > seqs[0]! && e.seq <= last).every((e) => seqs.includes(e.seq)),
      'every stored event since the page opened reached it',
    )
    await shot(page, '07-resumed')
  })

  await t.test('a tenant sees only its own devices', async (t) => {
    // A secured service: static tokens of tenant-a, tenant-b and an operator (bound to host-admin: it sets masks).
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-console-auth-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const tok = (who: string) => `tok-${who}-0123456789abcdef`
    const who = ['tenant-a', 'tenant-b', 'operator'] as const
    fs.writeFileSync(path.join(dir, 'tokens'), who.map((w) => `${w}:${tokenDigest(tok(w))}\n`).join(''))
    fs.writeFileSync(
      path.join(dir, 'rbac.yaml'),
      'bindings:\n  - subjects: [tenant-a]\n    roles: [tenant]\n  - subjects: [tenant-b]\n    roles: [tenant]\n  - subjects: [operator]\n    roles: [host-admin]\n',
    )
    const sec = await startScenario(t, db, {
      APMATRIX_PROFILE: 'demo',
      APMATRIX_RESYNC_MS: '1000',
      APMATRIX_AUTH_TOKENS_FILE: path.join(dir, 'tokens'),
      APMATRIX_RBAC_FILE: path.join(dir, 'rbac.yaml'),
    })
    const as =
      (w: (typeof who)[number]) =>
      async (method: string, p: string, body?: unknown): Promise<any> => {
        const r = await sec.call(method, p, { headers: { authorization: `Bearer ${tok(w)}` }, ...(body === undefined ? {} : { body }) })
        if (r.status >= 300) throw new Error(`${w} ${method} ${p}: ${r.status} ${r.text}`)
        return r.body
      }
    const op = as('operator')
    const ready = (uuid: string) =>
      until(`${uuid} Ready`, async () => {
        const m = await op('GET', `${HOST}/mdevs/${uuid}`)
        return isReady(m) ? m : undefined
      })
    t.equal((await sec.call('GET', `${HOST}/mdevs`)).status, 401, 'the service asks for a token')
    await op('PUT', `${HOST}/masks`, { apmask: '-5,-6,-7' })
    await as('tenant-a')('POST', `${HOST}/mdevs`, { uuid: A, spec: { adapters: [5], domains: [1, 2] } })
    await as('tenant-b')('POST', `${HOST}/mdevs`, { uuid: B, spec: { adapters: [6], domains: [4, 0x47] } })
    await ready(A)
    await ready(B)

    const ctx = await browser.newContext({ viewport: { width: 1366, height: 768 } })
    t.teardown(() => ctx.close())
    await ctx.addInitScript((token) => (globalThis as any).sessionStorage.setItem('apmatrix.token', token), tok('tenant-a'))
    const tp = await ctx.newPage()
    const tErrors: string[] = []
    tp.on('pageerror', (e) => tErrors.push(e.message))
    await tp.goto(`${sec.svc.httpUrl}/ui`)
    await waitPage(tp, 'the queues to be read', () => (globalThis as any).__console?.queuesLoaded, null)
    await waitPage(tp, 'the event stream', () => (globalThis as any).__console.streamState() === 'live', null)

    // What the API answers tenant-a: its own device only; the inventory says 06.0004 is held, not by whom.
    const listed = await as('tenant-a')('GET', `${HOST}/mdevs`)
    t.same(
      listed.items.map((m: any) => m.metadata.uuid),
      [A],
      'the API lists tenant-a its own device only',
    )
    const q64 = (await as('tenant-a')('GET', `${HOST}/queues?adapter=6`)).items.find((q: any) => q.apqn === '06.0004')
    t.equal(q64.owner, 'in use', "the inventory tells tenant-a that 06.0004 is held, without tenant-b's device's uuid")
    t.same(
      (await as('tenant-a')('GET', `${HOST}/bus-mdevs`)).items.map((b: any) => b.uuid),
      [A],
      "the bus devices tenant-a is shown: its own (tenant-b's is not named)",
    )

    t.match(await tp.textContent('#devices'), /a1111111/, "tenant-a's device is listed")
    t.notMatch(await tp.textContent('#devices'), /b2222222/, "tenant-b's device is not")
    t.match(await tp.textContent('#hostline'), /your devices only/)
    const a = await cellState(tp, 5, 1)
    t.equal(a.kind, 'device')
    t.equal(a.device, A)
    t.equal(await pixel(tp, 5, 1), a.color, "tenant-a's cell in its device colour")
    for (const d of [4, 0x47]) {
      const c = await cellState(tp, 6, d)
      t.equal(c.kind, 'hidden', `06.${d}: not drawn as a device`)
      t.equal(c.device, null, `06.${d}: no device named`)
      t.equal(await pixel(tp, 6, d), KIND_COLORS.hidden, `06.${d}: drawn in the not-visible colour`)
    }
    t.match(await tp.textContent('#legend'), /not visible to you \(2\)/)
    await shot(tp, '08-tenant')

    // Live: tenant-b's new device does not reach the page as a device or an event; tenant-a's does.
    const B2 = 'b2222222-0000-4000-8000-000000000022'
    await as('tenant-b')('POST', `${HOST}/mdevs`, { uuid: B2, spec: { adapters: [7], domains: [0x0a] } })
    await ready(B2)
    const A2 = 'a1111111-0000-4000-8000-000000000022'
    await as('tenant-a')('POST', `${HOST}/mdevs`, { uuid: A2, spec: { adapters: [7], domains: [1] } })
    await ready(A2)
    await waitPage(tp, "tenant-a's new device drawn", (u) => (globalThis as any).__console.cell(7, 1)?.device === u, A2)
    await waitPage(tp, '07.000a held by someone', () => (globalThis as any).__console.cell(7, 0x0a)?.kind === 'hidden', null)
    t.equal(await pixel(tp, 7, 0x0a), KIND_COLORS.hidden, "tenant-b's new device's cell is drawn not visible")
    const evs = (await tp.evaluate(() => (globalThis as any).__console.events())) as { name: string; message: string }[]
    t.ok(
      evs.some((e) => e.name.includes(A2)),
      "tenant-a's device events reached the page",
    )
    t.same(
      evs.filter((e) => `${e.name} ${e.message}`.includes(B.slice(0, 8))),
      [],
      "no event about tenant-b's devices reached the page",
    )
    t.notMatch(await tp.textContent('#devices'), /b2222222/, 'still not listed')
    await shot(tp, '09-tenant-live')
    t.same(tErrors, [], 'no script errors in the tenant page')
  })

  t.same(errors, [], 'no script errors and no failed loads in the page')
  t.ok(isReady(await s.mdev(A)))
})
