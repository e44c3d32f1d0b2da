/** The error mapper (docs/api.md (REST) table): every ApmatrixError code, trailers, INTERNAL without leaks. */
import * as grpc from '@grpc/grpc-js'
import path from 'node:path'
import t from 'tap'
import { ApmatrixError, type ErrorCode } from '../../../src/domain/errors.js'
import { HubClosedError, SubscriptionLagError } from '../../../src/events/hub.js'
import { encodeViolations, toGrpcError } from '../../../src/transport/grpc/errors.js'
import { PROTO_ROOT } from '../../../src/transport/grpc/proto.js'

const TABLE: Array<[ErrorCode, keyof typeof grpc.status]> = [
  ['INVALID_ARGUMENT', 'INVALID_ARGUMENT'],
  ['OUT_OF_RANGE', 'OUT_OF_RANGE'],
  ['NOT_FOUND', 'NOT_FOUND'],
  ['ALREADY_EXISTS', 'ALREADY_EXISTS'],
  ['CONFLICT', 'ABORTED'],
  ['APQN_IN_USE', 'FAILED_PRECONDITION'],
  ['APQN_RESERVED', 'FAILED_PRECONDITION'],
  ['BUSY', 'FAILED_PRECONDITION'],
  ['FAILED_PRECONDITION', 'FAILED_PRECONDITION'],
  ['UNAUTHENTICATED', 'UNAUTHENTICATED'],
  ['PERMISSION_DENIED', 'PERMISSION_DENIED'],
  ['PAYLOAD_TOO_LARGE', 'RESOURCE_EXHAUSTED'],
  ['RATE_LIMITED', 'RESOURCE_EXHAUSTED'],
  ['UNAVAILABLE', 'UNAVAILABLE'],
]

t.test('docs/api.md (REST): every code to its gRPC status, with code and errno trailers', async (t) => {
  for (const [code, status] of TABLE) {
    const e = toGrpcError(new ApmatrixError(code, `m ${code}`, { errno: 'EBUSY' }), 'rid')
    t.equal(e.code, grpc.status[status], `${code} → ${status}`)
    t.equal(e.details, `m ${code}`)
    t.equal(e.metadata.get('code')[0], code)
    t.equal(e.metadata.get('errno')[0], 'EBUSY')
    t.equal(e.metadata.get('x-request-id')[0], 'rid')
  }
})

t.test('unknown errors are INTERNAL with nothing of the original', async (t) => {
  const seen: unknown[] = []
  const e = toGrpcError(new TypeError('cannot read x of undefined at /src/secret.ts:10'), 'rid-2', (x) => seen.push(x))
  t.equal(e.code, grpc.status.INTERNAL)
  t.notMatch(e.details, /secret|undefined/)
  t.equal(seen.length, 1, 'handed to the logger')
  t.equal(toGrpcError('a string', 'r').code, grpc.status.INTERNAL)
})

t.test('watch ends: lag and shutdown carry resume-seq', async (t) => {
  const lag = toGrpcError(new SubscriptionLagError(41, 5000), 'r')
  t.equal(lag.code, grpc.status.RESOURCE_EXHAUSTED)
  t.equal(lag.metadata.get('resume-seq')[0], '41')
  const closed = toGrpcError(new HubClosedError(7), 'r')
  t.equal(closed.code, grpc.status.UNAVAILABLE)
  t.equal(closed.metadata.get('resume-seq')[0], '7')
})

t.test('violations: JSON trailer, and violations-bin decodes as apmatrix.v1.Violations', async (t) => {
  const violations = [
    { rule: 'APQN_IN_USE' as const, message: 'APQN 05.0004 is in mdev X', apqn: '05.0004', owner: '1111', fix: 'remove it from X' },
    { rule: 'OUT_OF_RANGE' as const, message: 'adapter 300 > 255', id: 300, field: 'adapters' },
    { rule: 'INVALID_ARGUMENT' as const, message: 'zero is an id too', id: 0, field: 'domains' },
  ]
  const e = toGrpcError(new ApmatrixError('APQN_IN_USE', 'refused', { violations }), 'r')
  t.same(JSON.parse(e.metadata.get('violations')[0] as string), violations)
  const bin = e.metadata.get('violations-bin')[0] as Buffer
  t.same(bin, encodeViolations(violations))
  // Decode with protobufjs (what @grpc/proto-loader parses with) from types.proto itself.
  const pbjs = (await import('protobufjs')).default
  const root = new pbjs.Root()
  root.resolvePath = (_origin, target) => path.join(PROTO_ROOT, target)
  root.loadSync('apmatrix/v1/types.proto', { keepCase: true })
  const Violations = root.lookupType('apmatrix.v1.Violations')
  const msg = Violations.toObject(Violations.decode(bin), { longs: String, defaults: false }) as { violations: Array<Record<string, unknown>> }
  const id = (v: Record<string, unknown>) => (v.id === undefined ? 'absent' : ((v.id as { value?: number }).value ?? 0))
  t.same(
    msg.violations.map((v) => [v.rule, v.apqn ?? '', id(v)]),
    [
      ['APQN_IN_USE', '05.0004', 'absent'],
      ['OUT_OF_RANGE', '', 300],
      ['INVALID_ARGUMENT', '', 0],
    ],
    'the id wrapper tells 0 from absent',
  )
})
