/**
 * What the console's browser tests share: Debian's Chromium driven by playwright-core (required in CI,
 * skipped loudly elsewhere), a fresh build of the console when web/ is newer than dist/console/, pixels read from
 * the grid canvas, and screenshots kept under test-artifacts/browser/ (emptied by the first test that runs).
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import type { Test } from 'tap'
import { type Browser, chromium, type Page } from 'playwright-core'
import { projectRoot } from '../../src/paths.js'
import { which } from '../helpers/required-tools.js'

/** Where the screenshots of the browser tests go (gitignored). */
export const ARTIFACTS = path.join(projectRoot, 'test-artifacts', 'browser')

/** The Chromium the tests drive: APMATRIX_CHROMIUM, else Debian's `chromium` on PATH. */
export function chromiumPath(): string | undefined {
  return process.env.APMATRIX_CHROMIUM || which('chromium')
}

/** Why the browser tests cannot run here (undefined: they can). */
export function chromiumMissing(): string | undefined {
  return chromiumPath() ? undefined : "chromium not found: install Debian package 'chromium' (apt-get install -y chromium)"
}

function newest(dir: string): number {
  let t = 0
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    t = Math.max(t, e.isDirectory() ? newest(p) : fs.statSync(p).mtimeMs)
  }
  return t
}

/** Builds the console (scripts/build-web.mjs) when its sources are newer than the bundle. */
export function ensureConsoleBuilt(): void {
  const bundle = path.join(projectRoot, 'dist', 'console', 'console.js')
  const src = path.join(projectRoot, 'web', 'console')
  const built = fs.existsSync(bundle) ? fs.statSync(bundle).mtimeMs : 0
  if (built >= newest(src) && built >= fs.statSync(path.join(projectRoot, 'scripts', 'build-web.mjs')).mtimeMs) return
  const r = spawnSync(process.execPath, [path.join(projectRoot, 'scripts', 'build-web.mjs')], { cwd: projectRoot, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`building the console failed: ${r.stderr}`)
}

/** Launches headless Chromium (closed at t's teardown). */
export async function launch(t: Test): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: chromiumPath()!,
    // Root in CI containers: Chromium's sandbox needs user namespaces it may not get.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  })
  t.teardown(() => browser.close())
  return browser
}

let cleaned = false

/** Saves a full-page screenshot as test-artifacts/browser/<name>.png; the folder is emptied once per process. */
export async function shot(page: Page, name: string): Promise<string> {
  if (!cleaned) {
    fs.rmSync(ARTIFACTS, { recursive: true, force: true })
    cleaned = true
  }
  fs.mkdirSync(ARTIFACTS, { recursive: true })
  const file = path.join(ARTIFACTS, `${name}.png`)
  await page.screenshot({ path: file })
  return file
}

/** Where on a cell a pixel is read (see Grid.point in web/console/src/grid.ts). */
export type CellPart = 'center' | 'edge' | 'claimRing' | 'topLeft' | 'topRight' | 'bottomLeft' | 'bottomRight'

/** The colour drawn on the grid canvas at one part of a cell, as `#rrggbb` (null when the cell is not drawn). */
export async function pixel(page: Page, apid: number, apqi: number, part: CellPart = 'center'): Promise<string | null> {
  return page.evaluate(
    ({ apid, apqi, part }) => {
      const w = globalThis as any
      const p = w.__console.point(apid, apqi, part)
      if (!p) return null
      const canvas = (globalThis as any).document.getElementById('grid')
      const dpr = (globalThis as any).devicePixelRatio || 1
      const d = canvas.getContext('2d')!.getImageData(Math.floor(p.x * dpr), Math.floor(p.y * dpr), 1, 1).data
      return `#${[d[0], d[1], d[2]].map((x: number) => x.toString(16).padStart(2, '0')).join('')}`
    },
    { apid, apqi, part },
  )
}

/** What the page's model says about one cell (window.__console.cell). */
export async function cellState(page: Page, apid: number, apqi: number): Promise<any> {
  return page.evaluate(({ apid, apqi }) => (globalThis as any).__console.cell(apid, apqi), { apid, apqi })
}

/** Waits (bounded) until `pred` holds in the page; fails naming `what`. */
export async function waitPage<A>(page: Page, what: string, pred: (arg: A) => unknown, arg: A, timeoutMs = 20_000): Promise<void> {
  try {
    await page.waitForFunction(pred as any, arg, { timeout: timeoutMs, polling: 50 })
  } catch (e) {
    throw new Error(`page: timed out waiting for ${what}: ${(e as Error).message.split('\n')[0]}`)
  }
}

/** A TCP relay in front of the service whose connections a test can cut (a real lost connection). */
export interface CutProxy {
  /** `http://127.0.0.1:PORT` of the relay. */
  url: string
  /** Destroys every open connection and refuses new ones until {@link CutProxy.restore}. */
  cut(): void
  restore(): void
}

/** Starts a {@link CutProxy} to `target` (`http://host:port`), closed at t's teardown. */
export async function startCutProxy(t: Test, target: string): Promise<CutProxy> {
  const to = new URL(target)
  const open = new Set<net.Socket>()
  let down = false
  const server = net.createServer((client) => {
    if (down) return void client.destroy()
    const upstream = net.connect(Number(to.port), to.hostname)
    for (const s of [client, upstream]) {
      open.add(s)
      s.on('error', () => undefined)
      s.on('close', () => {
        open.delete(s)
        client.destroy()
        upstream.destroy()
      })
    }
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy()
        server.close(() => resolve())
      }),
  )
  const { port } = server.address() as net.AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    cut: () => {
      down = true
      for (const s of open) s.destroy()
    },
    restore: () => {
      down = false
    },
  }
}
