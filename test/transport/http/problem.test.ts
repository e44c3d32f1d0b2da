/** The error → problem+json mapping (docs/api.md (REST) table), in isolation. */
import net from 'node:net'
import t from 'tap'
import { ApmatrixError, SysfsError, type ErrorCode } from '../../../src/domain/errors.js'
import { fromSysfsError } from '../../../src/service/sysfs-errors.js'
import { clientErrorHandler, HTTP_STATUS, toProblem } from '../../../src/transport/http/problem.js'

t.test('every code maps to the status of the product table', async (t) => {
  const table: Record<ErrorCode, number> = {
    INVALID_ARGUMENT: 400,
    OUT_OF_RANGE: 400,
    NOT_FOUND: 404,
    ALREADY_EXISTS: 409,
    CONFLICT: 409,
    APQN_IN_USE: 409,
    APQN_RESERVED: 409,
    BUSY: 409,
    INSTANCE_LIMIT: 409,
    FAILED_PRECONDITION: 409,
    UNAUTHENTICATED: 401,
    PERMISSION_DENIED: 403,
    PAYLOAD_TOO_LARGE: 413,
    RATE_LIMITED: 429,
    GONE: 410,
    UNAVAILABLE: 503,
  }
  t.same(HTTP_STATUS, table)
  for (const [code, status] of Object.entries(table)) {
    const p = toProblem(new ApmatrixError(code as ErrorCode, 'x', { violations: [{ rule: code as ErrorCode, message: 'm' }] }), 'r1')
    t.match(p, { status, code, requestId: 'r1', violations: [{ rule: code }] })
  }
})

t.test('kernel errnos keep their name and get a code', async (t) => {
  const cases: Array<[ConstructorParameters<typeof SysfsError>[0], number, string]> = [
    ['ENOENT', 404, 'NOT_FOUND'],
    ['EINVAL', 400, 'INVALID_ARGUMENT'],
    ['ENODEV', 400, 'OUT_OF_RANGE'],
    ['EBUSY', 409, 'BUSY'],
    ['EADDRINUSE', 409, 'APQN_IN_USE'],
    ['EADDRNOTAVAIL', 409, 'APQN_RESERVED'],
    ['EEXIST', 409, 'ALREADY_EXISTS'],
    ['EACCES', 403, 'PERMISSION_DENIED'],
    ['EIO', 503, 'UNAVAILABLE'],
  ]
  for (const [errno, status, code] of cases) t.match(toProblem(fromSysfsError(new SysfsError(errno, 'w')), 'r'), { status, code, errno })
})

t.test('framework errors: a bug is a 500 without details, bad input a 4xx', async (t) => {
  t.match(toProblem(new TypeError('secret internals'), 'r'), { status: 500, code: 'INTERNAL', detail: 'internal error' })
  t.match(toProblem(Object.assign(new Error('Unexpected token'), { statusCode: 400, code: 'FST_ERR_CTP_INVALID_JSON_BODY' }), 'r'), {
    status: 400,
    code: 'INVALID_ARGUMENT',
  })
  t.match(toProblem(Object.assign(new Error('big'), { statusCode: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE' }), 'r'), { status: 413, code: 'PAYLOAD_TOO_LARGE' })
})

// Found by test/reliability/fuzz-rest.test.ts: Node's parser reports every chunk after a parse error again; the
// second report destroyed the socket while the client was still sending (a 431 with a large body behind
// it), the client met a reset and sometimes lost the answer. Now the connection closes in stages.
t.test('a parse error: answer, then read what still comes until the client closes (RFC 9112 §9.6)', async (t) => {
  const server = net.createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r))
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  const sock = await accepted
  let received = ''
  const errors: string[] = []
  client.on('data', (d) => (received += d.toString('latin1')))
  client.on('error', (e: NodeJS.ErrnoException) => errors.push(e.code ?? e.message))
  const overflow = Object.assign(new Error('Header overflow'), { code: 'HPE_HEADER_OVERFLOW' })
  clientErrorHandler(overflow, sock)
  // The parser reports the next chunks too.
  clientErrorHandler(overflow, sock)
  clientErrorHandler(Object.assign(new Error('Parse Error'), { code: 'HPE_INVALID_METHOD' }), sock)
  t.equal(sock.destroyed, false, 'a second report does not cut the connection')
  await new Promise<void>((r) => client.write('x'.repeat(256 * 1024), () => r()))
  const closed = Promise.all([new Promise((r) => sock.once('close', r)), new Promise((r) => client.once('close', r))])
  client.end()
  await closed
  t.same(errors, [], 'the client saw no reset')
  t.match(received, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/)
  t.equal(received.match(/HTTP\/1\.1/g)?.length, 1, 'one answer')
  t.match(received, /"code":"HEADERS_TOO_LARGE"/)
})
