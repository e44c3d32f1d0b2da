/**
 * The gRPC edge over a real socket (docs/api.md (gRPC) Errors, Limits): undecodable request bytes are
 * INVALID_ARGUMENT on every kind of method (unary, server streaming, health); every error carries the
 * standard rich status (`grpc-status-details-bin`: google.rpc.Status with ErrorInfo, BadRequest,
 * PreconditionFailure) beside our own metadata keys; mask texts have the bounds REST has.
 *
 * The rich status is decoded here with protobufjs from the vendored google/rpc protos (the same
 * library the server encodes with); test/transport/grpc/python-client.test.ts decodes it with Debian's
 * python3-grpcio and protoc-generated classes, which share no code with the server.
 */
import * as grpc from '@grpc/grpc-js'
import t, { type Test } from 'tap'
import { decodeRichStatus, ERROR_DOMAIN } from '../../../src/transport/grpc/rich-status.js'
import { freshDatabase } from '../../store/pg-helper.js'
import { U1 } from '../../service/service-fixture.js'
import { grpcFixture, unary, type Outcome } from './grpc-fixture.js'

// Bytes protobufjs refuses: wire type 7 (does not exist), a length cut short, a length-delimited field 0
// cut short, a group that never ends.
const GARBAGE = [Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.from([0x0a, 0x80]), Buffer.from([0x02, 0x01]), Buffer.from([0x0b])]

interface RawOutcome {
  code: number
  details: string
  metadata: grpc.Metadata
}

/** A unary call with raw request bytes (no serializer), so the server gets exactly `bytes`. */
function rawUnary(client: grpc.Client, path: string, bytes: Buffer, md = new grpc.Metadata()): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const call = client.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      bytes,
      md,
      (err) => {
        if (!err) resolve({ code: 0, details: '', metadata: new grpc.Metadata() })
      },
    )
    call.on('status', (s) => resolve({ code: s.code, details: s.details, metadata: s.metadata }))
  })
}

/** A server-streaming call with raw request bytes; resolves with the final status. */
function rawStream(client: grpc.Client, path: string, bytes: Buffer): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const call = client.makeServerStreamRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      bytes,
    )
    call.on('data', () => {})
    call.on('error', () => {})
    call.on('status', (s) => resolve({ code: s.code, details: s.details, metadata: s.metadata }))
  })
}

function rich(t: Test, md: grpc.Metadata | null | undefined) {
  const bin = md?.get('grpc-status-details-bin')[0]
  t.ok(Buffer.isBuffer(bin), 'grpc-status-details-bin is there')
  return decodeRichStatus(bin as Buffer)
}

function errorInfo(s: ReturnType<typeof decodeRichStatus>) {
  return s.details.find((d) => d.type === 'google.rpc.ErrorInfo')?.value as { reason: string; domain: string; metadata: Record<string, string> } | undefined
}

t.test('gRPC edge', async (t) => {
  const fx = await grpcFixture(t, await freshDatabase(t, 'sqlite'))
  const client = new grpc.Client(fx.target, grpc.credentials.createInsecure())
  t.teardown(() => client.close())

  t.test('undecodable request bytes are INVALID_ARGUMENT, with request id and rich status', async (t) => {
    const paths = [
      '/apmatrix.v1.HostService/SetMasks',
      '/apmatrix.v1.MdevService/CreateMdev',
      '/apmatrix.v1.HostService/GetHost',
      '/grpc.health.v1.Health/Check',
    ]
    for (const path of paths) {
      for (const bytes of GARBAGE) {
        const md = new grpc.Metadata()
        md.set('x-request-id', 'fuzz-1')
        const r = await rawUnary(client, path, bytes, md)
        t.equal(r.code, grpc.status.INVALID_ARGUMENT, `${path} ${bytes.toString('hex')}: ${grpc.status[r.code]} ${r.details}`)
        t.equal(r.metadata.get('code')[0], 'INVALID_ARGUMENT')
        t.equal(r.metadata.get('x-correlation-id')[0], 'fuzz-1')
        const rid = r.metadata.get('x-request-id')[0]
        t.match(r.details, /could not be decoded/)
        const s = rich(t, r.metadata)
        t.equal(s.code, grpc.status.INVALID_ARGUMENT)
        t.match(errorInfo(s), { reason: 'INVALID_ARGUMENT', domain: ERROR_DOMAIN, metadata: { requestId: rid } })
      }
    }
    const w = await rawStream(client, '/apmatrix.v1.EventService/Watch', GARBAGE[0]!)
    t.equal(w.code, grpc.status.INVALID_ARGUMENT, `Watch: ${grpc.status[w.code]} ${w.details}`)
    // Nothing was stored, and the server still answers.
    const masks = await unary(fx.clients.hosts.GetMasks.bind(fx.clients.hosts), { host: 'local' })
    t.equal(masks.res?.spec?.apmask_ids.length, 256)
  })

  t.test('admission refusals: ErrorInfo with errno, PreconditionFailure per violation; metadata keys kept', async (t) => {
    const o: Outcome<unknown> = await unary(fx.clients.mdevs.CreateMdev.bind(fx.clients.mdevs), {
      host: 'local',
      uuid: U1,
      spec: { adapters: [5, 6], domains: [4], control_domains: [], state: 'started' },
    } as never)
    t.equal(o.err?.code, grpc.status.FAILED_PRECONDITION, o.err?.details ?? '')
    const code = o.trailers?.get('code')[0]
    t.equal(code, 'APQN_RESERVED')
    t.ok(o.trailers?.get('violations')[0], 'JSON violations kept')
    t.ok(o.trailers?.get('violations-bin')[0], 'violations-bin kept')
    const s = rich(t, o.trailers)
    t.equal(s.code, grpc.status.FAILED_PRECONDITION)
    t.equal(s.message, o.err?.details)
    t.match(errorInfo(s), { reason: 'APQN_RESERVED', domain: ERROR_DOMAIN, metadata: { errno: 'EADDRNOTAVAIL' } })
    const pf = s.details.find((d) => d.type === 'google.rpc.PreconditionFailure')?.value as {
      violations: Array<{ type: string; subject: string; description: string }>
    }
    t.same(pf.violations.map((v) => v.subject).sort(), ['05.0004', '06.0004'], 'one per APQN')
    t.ok(pf.violations.every((v) => v.type === 'APQN_RESERVED' && v.description.length > 0))
    t.notOk(s.details.some((d) => d.type === 'google.rpc.BadRequest'))
  })

  t.test('bad input: BadRequest field violations', async (t) => {
    const o = await unary(fx.clients.hosts.SetMasks.bind(fx.clients.hosts), { host: 'local', apmask: '0X12' } as never)
    t.equal(o.err?.code, grpc.status.INVALID_ARGUMENT)
    const s = rich(t, o.trailers)
    t.match(errorInfo(s), { reason: 'INVALID_ARGUMENT', metadata: { errno: 'EINVAL' } })
    const br = s.details.find((d) => d.type === 'google.rpc.BadRequest')?.value as {
      field_violations: Array<{ field: string; description: string; reason: string }>
    }
    t.match(br.field_violations, [{ field: 'apmask', reason: 'INVALID_ARGUMENT', description: /not a valid mask write/ }])
  })

  t.test('errors without violations: ErrorInfo only', async (t) => {
    const o = await unary(fx.clients.hosts.GetHost.bind(fx.clients.hosts), { host: 'nope' } as never)
    t.equal(o.err?.code, grpc.status.NOT_FOUND)
    const s = rich(t, o.trailers)
    t.equal(s.details.length, 1)
    t.match(errorInfo(s), { reason: 'NOT_FOUND', domain: ERROR_DOMAIN })
    t.ok(errorInfo(s)?.metadata.requestId)
  })

  // Found by test/reliability/fuzz-grpc.test.ts: 1,024 violations made ~90 KiB of trailers, over the 64 KiB a
  // gRPC peer accepts; the status never arrived and the call hung until its deadline (forever without one).
  t.test('an error with a thousand violations still arrives, its trailers bounded', async (t) => {
    const o = await unary(
      fx.clients.mdevs.CreateMdev.bind(fx.clients.mdevs),
      { host: 'local', uuid: U1, spec: { adapters: [5], domains: Array.from({ length: 1024 }, (_, i) => 256 + i), control_domains: [] } } as never,
      // A hang guard only: the answer comes at once, or (the defect) never.
      { deadlineMs: 60_000 },
    )
    t.equal(o.err?.code, grpc.status.OUT_OF_RANGE, `${o.err ? grpc.status[o.err.code] : 'OK'}: ${o.err?.details}`)
    t.match(o.err?.details, /\(and 1023 more\)$/, 'the message counts them all')
    const bin = o.trailers?.get('violations-bin')[0] as Buffer
    t.ok(bin.length > 0 && bin.length <= 16 * 1024, `violations-bin: ${bin.length} bytes`)
    const size = Object.entries(o.trailers?.toHttp2Headers() ?? {}).reduce((n, [k, v]) => n + k.length + String(v).length, 0)
    t.ok(size < 48 * 1024, `all trailers: ${size} bytes`)
    const s = rich(t, o.trailers)
    const br = s.details.find((d) => d.type === 'google.rpc.BadRequest')?.value as { field_violations: Array<{ field: string }> }
    t.equal(br.field_violations[0]?.field, 'spec.domains[0]', 'the first violations are kept')
  })

  t.test('mask texts over 1,024 characters are refused, as on REST (4 MiB ones too)', async (t) => {
    const setMasks = fx.clients.hosts.SetMasks.bind(fx.clients.hosts)
    const long = Array.from({ length: 300 }, (_, i) => `+${i % 256}`).join(',')
    for (const text of [long, `0x${'f'.repeat(1100)}`, '+1,'.repeat((4 * 1024 * 1024 - 64) / 3)]) {
      for (const field of ['apmask', 'aqmask'] as const) {
        const o = await unary(setMasks, { host: 'local', [field]: text } as never)
        t.equal(o.err?.code, grpc.status.INVALID_ARGUMENT, `${field} of ${text.length} characters: ${o.err?.details.slice(0, 200)}`)
        t.match(o.err?.details, /at most 1024 characters/)
      }
    }
    const apply = await unary(fx.clients.desired.Apply.bind(fx.clients.desired), {
      host: 'local',
      desired: { masks: { apmask: long, aqmask: '' }, mdevs: [] },
    } as never)
    t.equal(apply.err?.code, grpc.status.INVALID_ARGUMENT, apply.err?.details ?? '')
    const masks = await unary(fx.clients.hosts.GetMasks.bind(fx.clients.hosts), { host: 'local' })
    t.equal(masks.res?.spec?.apmask_ids.length, 256, 'nothing stored')
  })
})
