/** The error → problem+json mapping (docs/api.md (REST) table), in isolation. */
import t from 'tap'
import { ApmatrixError, SysfsError, type ErrorCode } from '../../../src/domain/errors.js'
import { fromSysfsError } from '../../../src/service/sysfs-errors.js'
import { HTTP_STATUS, toProblem } from '../../../src/transport/http/problem.js'

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
