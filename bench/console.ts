/**
 * Web console benchmark (`npm run bench -- console`, issue 10 §5), in headless Chromium (Debian's
 * `chromium`, driven by playwright-core) against the whole service with host `local` on the `full` profile
 * (256 adapters x 256 domains, 65,536 queues):
 *  1. time to first render of the grid (every owner drawn) and to the draw with every queue read, from
 *     navigation start;
 *  2. time for a live update to appear after a bus change: a guest opens a matrix device (the hypervisor's
 *     doing, on the emulated bus) until the page draws the "in a guest" mark, and a device write until its
 *     cells are drawn in its colour;
 *  3. the longest frame while 50 events per second arrive for 10 s (label updates of a device by PUT, each one
 *     an `MdevUpdated` event the page follows): the largest gap between animation frames and the longest
 *     task (PerformanceObserver `longtask`).
 * Figures only: nothing passes or fails. APMATRIX_CHROMIUM overrides the browser path.
 */
import { spawnSync } from 'node:child_process'
import { chromium, type Page } from 'playwright-core'
import { callJson, expectStatus, startBenchService } from './service-helpers.js'
import type { BenchSuite } from './suite.js'

const HOST = '/v1/hosts/local'
const DEVICE = 'be0c0501-0000-4000-8000-000000000001'
const EVENTS_PER_S = 50
const BURST_S = 10
const QUEUES_WAIT_MS = 120_000
const SPEC = { adapters: [0], domains: Array.from({ length: 16 }, (_, i) => i) }

function chromiumPath(): string | undefined {
  if (process.env.APMATRIX_CHROMIUM) return process.env.APMATRIX_CHROMIUM
  const r = spawnSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' })
  return r.status === 0 ? r.stdout.trim() : undefined
}

async function waitPage(page: Page, what: string, pred: string, timeoutMs = 600_000): Promise<void> {
  try {
    // As a function, not a string: the console's CSP (script-src 'self') refuses the eval of a string predicate.
    const fn = new Function(`return (${pred})`) as () => unknown
    await page.waitForFunction(fn, undefined, { timeout: timeoutMs, polling: 'raf' })
  } catch (e) {
    throw new Error(`console bench: timed out waiting for ${what}: ${(e as Error).message.split('\n')[0]}`)
  }
}

async function run(): Promise<void> {
  const exe = chromiumPath()
  if (!exe) {
    console.log('console bench SKIPPED: no chromium (apt-get install -y chromium, or set APMATRIX_CHROMIUM)')
    return
  }
  const bench = await startBenchService('full')
  const base = bench.svc.httpUrl
  const browser = await chromium.launch({ executablePath: exe, args: ['--no-sandbox', '--disable-dev-shm-usage'] })
  try {
    const page = await browser.newPage({ viewport: { width: 1366, height: 768 } })
    // 1. first render
    await page.goto(`${base}/ui`)
    await waitPage(page, 'the first draw', 'window.__console?.ready')
    const first = (await page.evaluate('({ at: window.__console.firstDrawAt, cell: window.__console.cellSize() })')) as { at: number; cell: number }
    console.log(`full host, 256 x 256 cells at ${first.cell} px (fit to a 1366x768 window)`)
    console.log(`  first render (every owner drawn), from navigation start: ${first.at.toFixed(0)} ms`)
    // Every queue (the marks: unbound, offline, requests): one GET /queues?adapter=N per adapter, read in the
    // background; bounded here so the run goes on when the server is slow.
    try {
      await waitPage(page, 'every queue', 'window.__console?.queuesLoaded', QUEUES_WAIT_MS)
      const at = (await page.evaluate('window.__console.queuesDrawnAt')) as number
      console.log(`  every queue read and drawn, from navigation start:       ${at.toFixed(0)} ms`)
    } catch {
      console.log(`  every queue read and drawn: not within ${QUEUES_WAIT_MS / 1000} s (256 GET /queues?adapter=N; the run goes on)`)
    }

    // 2. live updates. Adapter 0 leaves the host, then a device takes 0 x 0..15.
    expectStatus('masks', await callJson(base, 'PUT', `${HOST}/masks`, { apmask: '-0' }), 200)
    await waitPage(page, 'adapter 0 free on the page', "window.__console.cell(0, 0)?.kind === 'free'")
    const tw = performance.now()
    expectStatus('create', await callJson(base, 'POST', `${HOST}/mdevs`, { uuid: DEVICE, spec: SPEC }), 201)
    await waitPage(page, 'the device drawn', `window.__console.cell(0, 15)?.device === '${DEVICE}'`)
    const writeMs = performance.now() - tw
    const tg = performance.now()
    expectStatus('guest', await callJson(base, 'POST', `${HOST}/emulator/guests`, { uuid: DEVICE, guest: 'bench-vm' }), 204)
    await waitPage(page, 'the guest mark', "window.__console.cell(0, 0)?.marks.guest === 'bench-vm'")
    const guestMs = performance.now() - tg
    console.log(`  device write -> its 16 cells drawn (reconcile included): ${writeMs.toFixed(0)} ms`)
    console.log(`  guest opens the device (bus change) -> mark drawn:       ${guestMs.toFixed(0)} ms`)

    // 3. 50 events/s for 10 s: frame gaps and long tasks in the page.
    await page.evaluate(`(() => {
      const w = window
      w.__frames = { maxGap: 0, longest: 0, longtasks: 0, last: performance.now(), on: true }
      const f = () => { const now = performance.now(); w.__frames.maxGap = Math.max(w.__frames.maxGap, now - w.__frames.last); w.__frames.last = now; if (w.__frames.on) requestAnimationFrame(f) }
      requestAnimationFrame(f)
      new PerformanceObserver((l) => { for (const e of l.getEntries()) { w.__frames.longtasks++; w.__frames.longest = Math.max(w.__frames.longest, e.duration) } }).observe({ type: 'longtask', buffered: false })
    })()`)
    const seq0 = (await page.evaluate('window.__console.lastSeq()')) as number
    const start = performance.now()
    let sent = 0
    while (performance.now() - start < BURST_S * 1000) {
      const due = Math.floor(((performance.now() - start) / 1000) * EVENTS_PER_S)
      while (sent < due) {
        sent++
        const r = await callJson(base, 'PUT', `${HOST}/mdevs/${DEVICE}`, { spec: SPEC, labels: { n: String(sent) } })
        if (r.status !== 200) throw new Error(`PATCH: ${r.status}`)
      }
      await new Promise((r) => setTimeout(r, 5))
    }
    const sentS = (performance.now() - start) / 1000
    await waitPage(page, 'the last label event', `window.__console.lastSeq() >= ${seq0 + sent}`)
    const fr = (await page.evaluate('(() => { window.__frames.on = false; return window.__frames })()')) as {
      maxGap: number
      longest: number
      longtasks: number
    }
    const updates = (await page.evaluate('window.__console.updates')) as number
    console.log(`  ${sent} events in ${sentS.toFixed(1)} s (${(sent / sentS).toFixed(0)}/s); model rebuilds so far ${updates}`)
    console.log(`  longest gap between frames: ${fr.maxGap.toFixed(0)} ms; long tasks (> 50 ms): ${fr.longtasks}, longest ${fr.longest.toFixed(0)} ms`)
  } finally {
    await browser.close()
    await bench.stop()
  }
}

/** The console suite of `npm run bench`. */
export const consoleSuite: BenchSuite = {
  name: 'console',
  description: 'web console in headless Chromium on the full host: first render, live update, longest frame at 50 events/s',
  run,
}
