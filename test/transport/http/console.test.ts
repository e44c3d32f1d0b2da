/**
 * The web console's files at /ui (src/transport/http/console.ts): the redirect, the static files, no
 * directory escape, the 404 problem when the console is not built, and a page a strict CSP allows (no inline
 * script or style). The page itself is tested in Chromium: test/browser/.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { projectRoot } from '../../../src/paths.js'
import { buildApp } from '../../../src/transport/http/app.js'
import { freshDatabase } from '../../store/pg-helper.js'
import { serviceFixture } from '../../service/service-fixture.js'

async function app(t: Test, consoleDir: string) {
  const fx = await serviceFixture(t, await freshDatabase(t, 'sqlite'))
  const a = buildApp({ service: fx.service, consoleDir })
  await a.ready()
  t.teardown(() => a.close())
  return a
}

t.test('a built console is served at /ui/', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-ui-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.writeFileSync(path.join(dir, 'index.html'), '<!doctype html><title>apmatrix console</title>')
  fs.writeFileSync(path.join(dir, 'console.js'), 'export {}')
  fs.writeFileSync(path.join(dir, '.secret'), 'no')
  const a = await app(t, dir)
  const r = await a.inject({ url: '/ui' })
  t.equal(r.statusCode, 302)
  t.equal(r.headers.location, '/ui/')
  t.equal((await a.inject({ url: '/ui?host=lpar1' })).headers.location, '/ui/?host=lpar1', 'the query is kept')
  const page = await a.inject({ url: '/ui/' })
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-type'], /text\/html/)
  t.match(page.body, /apmatrix console/)
  t.ok(page.headers.etag, 'revalidated by ETag')
  const js = await a.inject({ url: '/ui/console.js' })
  t.equal(js.statusCode, 200)
  t.match(js.headers['content-type'], /javascript/)
  t.not((await a.inject({ url: '/ui/.secret' })).statusCode, 200, 'no dotfiles')
  const outside = await a.inject({ url: '/ui/..%2f..%2fpackage.json' })
  t.not(outside.statusCode, 200, 'no way out of the folder')
  t.notMatch(outside.body, /"name": "apmatrix"/)
  const missing = await a.inject({ url: '/ui/nope.js' })
  t.equal(missing.statusCode, 404)
  t.match(missing.headers['content-type'], /problem\+json/)
})

t.test('without a build, /ui says how to build it', async (t) => {
  const a = await app(t, path.join(os.tmpdir(), 'apmatrix-ui-does-not-exist'))
  const r = await a.inject({ url: '/ui' })
  t.equal(r.statusCode, 404)
  t.match(r.headers['content-type'], /problem\+json/)
  t.match(JSON.parse(r.body).detail, /npm run build/)
})

t.test('the page has no inline script or style (a strict Content-Security-Policy holds) and loads nothing from elsewhere', async (t) => {
  const html = fs.readFileSync(path.join(projectRoot, 'web', 'console', 'index.html'), 'utf8')
  t.same(html.match(/<script(?![^>]*\ssrc=)[^>]*>/g) ?? [], [], 'every script is a file')
  t.same(html.match(/<style|\sstyle=|\son[a-z]+=/gi) ?? [], [], 'no inline style or handler')
  t.same(html.match(/(?:src|href)="(?:https?:)?\/\//g) ?? [], [], 'no external resource')
  const css = fs.readFileSync(path.join(projectRoot, 'web', 'console', 'console.css'), 'utf8')
  t.same(css.match(/@import|url\(/g) ?? [], [], 'no external font or import in the style sheet')
})
