/**
 * The HTTP edge over a real socket (docs/api.md (Security headers, CORS and request guards), (Errors)):
 * security headers, CORS off by default and configurable, state-changing requests from foreign origins
 * refused, foreign `Host` names refused without authentication (DNS rebinding), and the refusals that
 * happen before routing (bad percent-encoding, over-long parameters, oversized headers, wrong media
 * type) answered with the problem body and their own code.
 */
import net from 'node:net'
import t, { type Test } from 'tap'
import { freshDatabase } from '../../store/pg-helper.js'
import { apiFixture, type ApiResponse } from './http-fixture.js'

const REBOOT = '/v1/hosts/local/emulator/reboot'

function isProblem(t: Test, r: { status: number; headers: Headers | Record<string, string>; body: unknown; text: string }, status: number, code: string): void {
  t.equal(r.status, status, `status ${status}: ${r.text.slice(0, 300)}`)
  const type = r.headers instanceof Headers ? r.headers.get('content-type') : r.headers['content-type']
  t.match(type, /^application\/problem\+json/)
  t.match(r.body, { status, code, title: String, detail: String, requestId: String })
}

/** One request written byte for byte on a TCP socket (a Host or a request line fetch would not send); the answer as sent. */
async function rawRequest(port: number, request: string): Promise<{ status: number; headers: Record<string, string>; body: unknown; text: string }> {
  const data = await new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = []
    // Written without half-closing: a request answered later (a reboot) would otherwise be cut by the close.
    const s = net.connect(port, '127.0.0.1', () => s.write(request))
    s.on('data', (c) => chunks.push(c))
    s.on('error', (e) => (chunks.length ? resolve(Buffer.concat(chunks).toString('utf8')) : reject(e)))
    s.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')))
  })
  const [head = '', ...rest] = data.split('\r\n\r\n')
  const [statusLine = '', ...lines] = head.split('\r\n')
  const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]))
  const text = rest.join('\r\n\r\n')
  let body: unknown = text
  try {
    body = JSON.parse(text)
  } catch {}
  return { status: Number(statusLine.split(' ')[1]), headers, body, text }
}

function get(path: string, host: string, extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nhost: ${host}\r\nconnection: close\r\n${extra}\r\n`
}

t.test('default settings', async (t) => {
  const api = await apiFixture(t, await freshDatabase(t, 'sqlite'))
  const { call, base } = api
  const port = Number(new URL(base).port)

  t.test('security headers on the HTML pages and nosniff on JSON', async (t) => {
    const docs = await call('GET', '/docs/')
    t.equal(docs.status, 200)
    t.match(docs.headers.get('content-type'), /^text\/html/)
    const csp = docs.headers.get('content-security-policy') ?? ''
    t.match(csp, /default-src 'self'/)
    t.match(csp, /frame-ancestors 'none'/)
    t.match(csp, /script-src 'self'/)
    t.notMatch(csp, /upgrade-insecure-requests/, 'a plain-http service does not upgrade its own assets')
    t.equal(docs.headers.get('x-frame-options'), 'DENY')
    t.equal(docs.headers.get('x-content-type-options'), 'nosniff')
    // Every script of the page is a file of its own origin: the CSP lets the page run.
    for (const m of docs.text.matchAll(/<script src="([^"]+)"/g)) {
      const r = await fetch(new URL(m[1]!, `${base}/docs/`))
      t.equal(r.status, 200, `${m[1]} loads`)
      await r.arrayBuffer()
    }
    t.notMatch(docs.text, /<script>(?!\s*<\/script>)/, 'no inline script the CSP would block')
    for (const path of ['/v1/hosts', '/healthz', '/openapi.json', '/v1/nope']) {
      const r = await call('GET', path)
      t.equal(r.headers.get('x-content-type-options'), 'nosniff', path)
      t.equal(r.headers.get('x-frame-options'), 'DENY', path)
    }
  })

  t.test('CORS is off: no Access-Control-Allow-Origin, preflights are not answered', async (t) => {
    const r = await call('GET', '/v1/hosts', { headers: { origin: 'https://evil.example' } })
    t.equal(r.status, 200)
    t.equal(r.headers.get('access-control-allow-origin'), null)
    const pre = await call('OPTIONS', REBOOT, { headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } })
    t.equal(pre.headers.get('access-control-allow-origin'), null)
    t.not(pre.status, 204)
  })

  t.test('a state-changing request from a foreign origin is refused and changes nothing', async (t) => {
    const bootId = (await call('GET', '/v1/hosts/local')).body.bootId
    for (const origin of ['https://evil.example', 'null', `http://127.0.0.1:${port + 1}`, 'http://localhost.evil.example']) {
      const r = await call('POST', REBOOT, { headers: { origin } })
      isProblem(t, r, 403, 'PERMISSION_DENIED')
    }
    isProblem(t, await call('PUT', '/v1/hosts/local/masks', { body: { apmask: '-5' }, headers: { origin: 'https://evil.example' } }), 403, 'PERMISSION_DENIED')
    isProblem(
      t,
      await call('DELETE', '/v1/hosts/local/mdevs/11111111-1111-4111-8111-111111111111', { headers: { origin: 'https://evil.example' } }),
      403,
      'PERMISSION_DENIED',
    )
    t.equal((await call('GET', '/v1/hosts/local')).body.bootId, bootId, 'not rebooted')
    // Reads from anywhere are answered (the browser keeps them from the page: no CORS header).
    t.equal((await call('GET', '/v1/hosts/local', { headers: { origin: 'https://evil.example' } })).status, 200)
  })

  t.test("the service's own origin and callers without Origin may change state", async (t) => {
    const before = (await call('GET', '/v1/hosts/local')).body.bootId
    const own = await call('POST', REBOOT, { headers: { origin: base } })
    t.equal(own.status, 200, own.text)
    t.not(own.body.bootId, before)
    t.equal((await call('POST', REBOOT)).status, 200, 'curl and the CLI send no Origin')
    const viaLocalhost = await rawRequest(
      port,
      `POST ${REBOOT} HTTP/1.1\r\nhost: localhost:${port}\r\norigin: http://localhost:${port}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`,
    )
    t.equal(viaLocalhost.status, 200, viaLocalhost.text)
  })

  t.test('a Host that is not a loopback name is refused (DNS rebinding)', async (t) => {
    for (const h of ['evil.example', `evil.example:${port}`, `127.0.0.1.nip.io:${port}`, `10.0.0.1:${port}`, '']) {
      const r = await rawRequest(port, get('/v1/hosts', h))
      isProblem(t, r, 421, 'MISDIRECTED_REQUEST')
      t.equal(r.headers['x-content-type-options'], 'nosniff')
    }
    const bootId = (await call('GET', '/v1/hosts/local')).body.bootId
    isProblem(
      t,
      await rawRequest(
        port,
        `POST ${REBOOT} HTTP/1.1\r\nhost: rebind.evil.example:${port}\r\norigin: http://rebind.evil.example:${port}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`,
      ),
      421,
      'MISDIRECTED_REQUEST',
    )
    t.equal((await call('GET', '/v1/hosts/local')).body.bootId, bootId, 'not rebooted')
    for (const h of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`, `[::1]:${port}`, 'localhost']) {
      t.equal((await rawRequest(port, get('/v1/hosts', h))).status, 200, h)
    }
  })

  t.test('refusals before routing answer the problem body', async (t) => {
    isProblem(t, await call('GET', '/v1/hosts/%ff'), 400, 'INVALID_ARGUMENT')
    isProblem(t, await call('GET', '/v1/hosts/local/mdevs/%e0%a4%a'), 400, 'INVALID_ARGUMENT')
    const long = await call('GET', `/v1/hosts/${'h'.repeat(300)}`)
    isProblem(t, long, 414, 'URI_TOO_LONG')
    t.ok(long.text.length < 2000, 'the detail does not echo the path')
    t.ok(long.headers.get('x-request-id'))
    const big = await rawRequest(port, get('/healthz', `127.0.0.1:${port}`, `x-big: ${'a'.repeat(20_000)}\r\n`))
    isProblem(t, big, 431, 'HEADERS_TOO_LARGE')
    const longUrl = await rawRequest(port, get(`/v1/hosts?x=${'a'.repeat(20_000)}`, `127.0.0.1:${port}`))
    isProblem(t, longUrl, 431, 'HEADERS_TOO_LARGE')
    isProblem(t, await rawRequest(port, 'GET / HTTP/1.1\r\nbad header\r\n\r\n'), 400, 'INVALID_ARGUMENT')
    t.equal((await call('GET', '/healthz')).status, 200, 'the service still answers')
  })

  // Found by test/reliability/fuzz-rest.test.ts: Node answered these itself (a bare 400, or a closed connection).
  t.test('no Host, two Hosts and CONNECT answer the problem body', async (t) => {
    const noHost = await rawRequest(port, 'GET /v1/hosts HTTP/1.1\r\nconnection: close\r\n\r\n')
    isProblem(t, noHost, 400, 'INVALID_ARGUMENT')
    t.match(noHost.body, { detail: /needs exactly one Host header; it has 0/ })
    const two = await rawRequest(port, `GET /v1/hosts HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\nhost: evil.example\r\nconnection: close\r\n\r\n`)
    isProblem(t, two, 400, 'INVALID_ARGUMENT')
    t.match(two.body, { detail: /it has 2/ })
    isProblem(t, await rawRequest(port, 'GET /v1/hosts HTTP/1.0\r\n\r\n'), 421, 'MISDIRECTED_REQUEST')
    for (const target of ['127.0.0.1:1', '/v1/hosts']) {
      const c = await rawRequest(port, `CONNECT ${target} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\n\r\n`)
      isProblem(t, c, 404, 'NOT_FOUND')
      t.match(c.body, { detail: `no route CONNECT ${target}: this service is not a proxy` })
      t.equal(c.headers['x-request-id'], (c.body as { requestId: string }).requestId)
    }
    t.equal((await call('GET', '/healthz')).status, 200, 'the service still answers')
  })

  // Found by test/reliability/fuzz-rest.test.ts: the 413 came while the client was still sending its body and
  // the connection was closed; the client's next write met a reset and about half of the clients lost
  // the answer (EPIPE). The rest of the body is read first now (up to 8 MiB), and the connection lives on.
  t.test('a body over the limit is read to its end, then 413; the connection serves the next request', async (t) => {
    const total = 2 * 1024 * 1024
    const s = net.connect(port, '127.0.0.1')
    await new Promise((r) => s.once('connect', r))
    let received = ''
    s.on('data', (d) => (received += d.toString('latin1')))
    s.on('error', () => undefined)
    const closed = new Promise((r) => s.once('close', r))
    const write = (chunk: string) => new Promise<Error | undefined>((r) => s.write(chunk, (e) => r(e ?? undefined)))
    let failed = await write(
      `POST /v1/hosts/local/mdevs HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\ncontent-length: ${total}\r\n\r\n`,
    )
    for (let sent = 0; sent < total && !failed; sent += 256 * 1024) failed = await write('x'.repeat(Math.min(256 * 1024, total - sent)))
    t.equal(failed, undefined, 'the whole body is read, not cut with a reset')
    await write(`GET /healthz HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\nconnection: close\r\n\r\n`)
    await closed
    const m = /^HTTP\/1\.1 (\d{3})[\s\S]*?content-length: (\d+)\r\n[\s\S]*?\r\n\r\n/i.exec(received)
    t.equal(m?.[1], '413', received.slice(0, 200))
    t.match(received.slice(m ? m[0].length : 0), /"code":"PAYLOAD_TOO_LARGE"/)
    t.match(received.slice(m ? m[0].length + Number(m[2]) : 0), /^HTTP\/1\.1 200 /, 'the next request on the connection is answered')
  })

  t.test('403 and 415 carry their own codes', async (t) => {
    isProblem(t, await call('POST', '/v1/hosts/local/mdevs', { raw: 'spec', headers: { 'content-type': 'text/plain' } }), 415, 'UNSUPPORTED_MEDIA_TYPE')
    isProblem(t, await call('PATCH', '/v1/hosts/local/mdevs/11111111-1111-4111-8111-111111111111', { body: { spec: {} } }), 415, 'UNSUPPORTED_MEDIA_TYPE')
    const r: ApiResponse = await call('POST', REBOOT, { headers: { origin: 'https://evil.example' } })
    t.equal(r.body.type, 'urn:apmatrix:problem:permission-denied')
  })
})

t.test('CORS allow-list', async (t) => {
  const CONSOLE = 'https://console.example:8443'
  const { call } = await apiFixture(t, await freshDatabase(t, 'sqlite'), { app: { corsOrigins: [`${CONSOLE}/`] } })
  const pre = await call('OPTIONS', REBOOT, {
    headers: { origin: CONSOLE, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,if-match' },
  })
  t.equal(pre.status, 204)
  t.equal(pre.headers.get('access-control-allow-origin'), CONSOLE)
  t.match(pre.headers.get('access-control-allow-methods'), /POST/)
  t.match(pre.headers.get('access-control-allow-headers'), /if-match/)
  const before = (await call('GET', '/v1/hosts/local')).body.bootId
  const r = await call('POST', REBOOT, { headers: { origin: CONSOLE } })
  t.equal(r.status, 200, r.text)
  t.equal(r.headers.get('access-control-allow-origin'), CONSOLE)
  t.match(r.headers.get('access-control-expose-headers'), /etag/)
  t.not(r.body.bootId, before)
  const evil = await call('OPTIONS', REBOOT, { headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } })
  t.equal(evil.headers.get('access-control-allow-origin'), null)
  isProblem(t, await call('POST', REBOOT, { headers: { origin: 'https://evil.example' } }), 403, 'PERMISSION_DENIED')
})

t.test('requireLocalHost: false (callers authenticated) accepts any Host, still refuses foreign origins', async (t) => {
  const { base } = await apiFixture(t, await freshDatabase(t, 'sqlite'), { app: { requireLocalHost: false } })
  const port = Number(new URL(base).port)
  t.equal((await rawRequest(port, get('/v1/hosts', 'apmatrix.internal:8080'))).status, 200)
  const cross = await rawRequest(
    port,
    `POST ${REBOOT} HTTP/1.1\r\nhost: apmatrix.internal:8080\r\norigin: https://evil.example\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`,
  )
  isProblem(t, cross, 403, 'PERMISSION_DENIED')
  const own = await rawRequest(
    port,
    `POST ${REBOOT} HTTP/1.1\r\nhost: apmatrix.internal:8080\r\norigin: https://apmatrix.internal:8080\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`,
  )
  t.equal(own.status, 200, own.text)
})

t.test('bad corsOrigins are refused at construction', async (t) => {
  const { buildApp } = await import('../../../src/transport/http/app.js')
  for (const o of ['*', 'evil.example', 'https://a.example/path', 'ftp://a.example', 'https://user@a.example']) {
    t.throws(() => buildApp({ service: {} as never, corsOrigins: [o] }), /not an http\(s\) origin/, o)
  }
})

t.test('APMATRIX_CORS_ORIGINS: a comma-separated list of origins, normalised; anything else stops the start', async (t) => {
  const { ConfigError, loadConfig } = await import('../../../src/config.js')
  t.same(loadConfig({}, {}).corsOrigins, [], 'off by default')
  t.same(loadConfig({}, { APMATRIX_CORS_ORIGINS: 'https://Console.example:8443/, http://127.0.0.1:3000' }).corsOrigins, [
    'https://console.example:8443',
    'http://127.0.0.1:3000',
  ])
  t.same(loadConfig({ corsOrigins: 'https://a.example' }, { APMATRIX_CORS_ORIGINS: 'https://b.example' }).corsOrigins, ['https://a.example'])
  for (const bad of ['*', 'console.example', 'https://a.example/ui', 'https://a.example?x']) {
    t.throws(() => loadConfig({}, { APMATRIX_CORS_ORIGINS: bad }), ConfigError, bad)
  }
})
