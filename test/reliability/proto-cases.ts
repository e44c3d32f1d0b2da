/**
 * gRPC fuzz cases generated from the descriptors the server loads (the API's package definition and the
 * health service's, as src/transport/grpc/server.ts loads them): every unary method of every service,
 * with request messages drawn from the method's request type (valid-shaped, with names and ids the
 * emulated hosts have; boundary: one field at or past the limits; malformed: the encoding of a valid
 * message broken at the wire level, or bytes that are no message at all, or another method's message),
 * metadata that is odd, and deadlines of 1 ms. Messages are encoded here and sent as bytes
 * (test/reliability/fuzz-grpc.test.ts: makeUnaryRequest with identity serialisers).
 */
import { createRequire } from 'node:module'
import * as protoLoader from '@grpc/proto-loader'
import fc from 'fast-check'
import { protoPath as healthProtoPath } from 'grpc-health-check'
import protobuf from 'protobufjs'
import { loadApiProto } from '../../src/transport/grpc/proto.js'

/** One unary method of the server. */
export interface GrpcMethod {
  /** `/apmatrix.v1.MdevService/CreateMdev` */
  path: string
  requestType: protobuf.Type
  responseType: protobuf.Type
}

/** One generated call. */
export interface GrpcCase {
  /** The method path it was generated for, or `unrouted`. */
  method: string
  /** The path it is sent to (the method's, or one that is no method). */
  path: string
  kind: string
  /** The request as sent. */
  bytes: Uint8Array
  /** The message the bytes started from, for the report (undefined for raw bytes). */
  message?: unknown
  metadata: Array<[string, string | Buffer]>
  /** A deadline this many ms after the call starts (1 ms: it expires while the server works). */
  deadlineMs?: number
}

interface FileDescriptorCodec {
  FileDescriptorProto: { decode(b: Uint8Array): unknown }
}

/** The unary methods of every service the server loads (API and health), resolved with protobufjs from the same descriptors. */
export function unaryMethods(): { methods: GrpcMethod[]; streaming: string[]; root: protobuf.Root } {
  const { definition } = loadApiProto()
  const health = protoLoader.loadSync(healthProtoPath, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true })
  const all: protoLoader.PackageDefinition = { ...definition, ...health }
  // Every file descriptor the definitions carry, once, as one FileDescriptorSet.
  const files = new Map<string, Buffer>()
  for (const d of Object.values(all)) for (const b of (d as { fileDescriptorProtos?: Buffer[] }).fileDescriptorProtos ?? []) files.set(b.toString('base64'), b)
  const { FileDescriptorProto } = createRequire(import.meta.url)('protobufjs/ext/descriptor') as FileDescriptorCodec
  const root = (protobuf.Root as unknown as { fromDescriptor(set: unknown): protobuf.Root }).fromDescriptor({
    file: [...files.values()].map((b) => FileDescriptorProto.decode(b)),
  })
  const methods: GrpcMethod[] = []
  const streaming: string[] = []
  for (const [name, d] of Object.entries(all)) {
    if ('format' in d) continue // a message or enum type
    const service = root.lookupService(name)
    for (const [methodName, m] of Object.entries(d as protoLoader.ServiceDefinition)) {
      if (m.requestStream || m.responseStream) {
        streaming.push(m.path)
        continue
      }
      const rm = service.methods[methodName]!
      rm.resolve()
      methods.push({ path: m.path, requestType: rm.resolvedRequestType!, responseType: rm.resolvedResponseType! })
    }
  }
  return { methods, streaming, root }
}

// ---- values ----

const UUIDS = ['4b0e8bd4-2a4b-4d36-9d43-5c2a3c8e1a01', '11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222222']
const ids = (max: number) => fc.array(fc.constantFrom(0, 1, 2, 4, 5, 6, 7, 10, 71, 0xab, 0xff), { maxLength: max })

/** Domain hints by field name (valid-shaped requests): hosts, devices, APQNs, sysfs paths the emulated hosts have. */
const HINTS: Record<string, fc.Arbitrary<unknown>> = {
  host: fc.constantFrom('local', 'local', 'local', 'sf', 'sf', 'nohost'),
  uuid: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...UUIDS) }, { weight: 1, arbitrary: fc.uuid({ version: 4 }) }),
  owner: fc.constantFrom('team-a', 'none', UUIDS[0]!),
  guest: fc.constantFrom('vm1', 'vm2'),
  apqn: fc.constantFrom('00.0004', '05.0004', '06.0005', '07.00ab', '01.0001', '99.0001'),
  path: fc.constantFrom(
    '/sys/bus/ap/apmask',
    '/sys/bus/ap/aqmask',
    '/sys/bus/ap/bindings',
    '/sys/bus/ap/devices/05.0004/online',
    '/sys/bus/ap/drivers/vfio_ap/bind',
    '/sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create',
    `/sys/devices/vfio_ap/matrix/${UUIDS[0]}/assign_adapter`,
    `/sys/devices/vfio_ap/matrix/${UUIDS[0]}/matrix`,
    '/etc/passwd',
  ),
  value: fc.constantFrom('-5\n', '+5\n', '1\n', '0\n', '5\n', `${UUIDS[0]}\n`, '05.0004\n', 'garbage'),
  apmask: fc.constantFrom('-5', '+5', '-5,-6', '+0-255', `0x${'f'.repeat(64)}`, '0x', '+4'),
  aqmask: fc.constantFrom('-4', '+4', '-0x47', '+0-255', `0x${'0'.repeat(64)}`),
  adapters: ids(3),
  domains: ids(3),
  control_domains: ids(2),
  action: fc.constantFrom(
    'config-off',
    'config-on',
    'checkstop',
    'checkstop-clear',
    'add-adapter',
    'remove-adapter',
    'add-domain',
    'remove-domain',
    'set-mode',
  ),
  mode: fc.constantFrom('cca', 'ep11', 'accel'),
  count: fc.integer({ min: 1, max: 6 }),
  per_second: fc.constantFrom(0, 1, 50, 1000),
  format: fc.constantFrom('mdevctl', 'libvirt-nodedev', 'libvirt-hostdev'),
  state: fc.constantFrom('started', 'stopped', ''),
  driver: fc.constantFrom('cex4queue', 'vfio_ap', 'none'),
  idempotency_key: fc.constantFrom('', 'k1', 'k2'),
  resource_version: fc.constantFrom('', '"1"', 'abc'),
  page_token: fc.constantFrom(''),
  service: fc.constantFrom('', 'apmatrix.v1.HostService', 'apmatrix.v1.MdevService', 'nope'),
  labels: fc.dictionary(fc.constantFrom('team', 'env'), fc.constantFrom('a', 'prod'), { maxKeys: 2 }),
}

const INT32 = { min: -(2 ** 31), max: 2 ** 31 - 1 }
const UINT32 = { min: 0, max: 2 ** 32 - 1 }

type Mode = 'valid' | 'boundary'

/** A value of a scalar protobuf type (64-bit integers as decimal strings, as the loader options say). */
function scalarArb(type: string, mode: Mode): fc.Arbitrary<unknown> {
  const b = mode === 'boundary'
  switch (type) {
    case 'string':
      return b
        ? fc.constantFrom(1024, 1025, 4096, 65_536, 1_000_000).chain((n) => fc.constantFrom('a', 'é', '\u{1F600}', '\u0000').map((c) => c.repeat(n)))
        : fc.oneof(fc.string({ maxLength: 24 }), fc.string({ unit: 'binary', maxLength: 24 }))
    case 'bytes':
      return fc.uint8Array({ maxLength: b ? 70_000 : 32 })
    case 'bool':
      return fc.boolean()
    case 'int32':
    case 'sint32':
    case 'sfixed32':
      return b ? fc.constantFrom(INT32.min, INT32.max, -1, 0) : fc.integer(INT32)
    case 'uint32':
    case 'fixed32':
      return b ? fc.constantFrom(UINT32.max, 2 ** 31, 256, 0) : fc.integer({ min: 0, max: 300 })
    case 'int64':
    case 'sint64':
    case 'sfixed64':
      return b ? fc.constantFrom('-9223372036854775808', '9223372036854775807', '-1', '0') : fc.bigInt({ min: -(2n ** 40n), max: 2n ** 40n }).map(String)
    case 'uint64':
    case 'fixed64':
      return b ? fc.constantFrom('18446744073709551615', '9223372036854775808', '0') : fc.bigInt({ min: 0n, max: 2n ** 40n }).map(String)
    case 'double':
    case 'float':
      return b ? fc.constantFrom(Number.MAX_VALUE, -Number.MAX_VALUE, Number.NaN, Number.POSITIVE_INFINITY, -0) : fc.double({ noNaN: true })
    default:
      throw new Error(`no generator for protobuf type ${type}`)
  }
}

/** Values of a field (repeated, map, message, enum or scalar). */
function fieldArb(f: protobuf.Field, mode: Mode, depth: number): fc.Arbitrary<unknown> {
  const hint = HINTS[f.name]
  const one = (m: Mode): fc.Arbitrary<unknown> => {
    const rt = f.resolvedType
    if (rt instanceof protobuf.Type) return messageArb(rt, m, depth + 1)
    if (rt instanceof protobuf.Enum) {
      const names = Object.keys(rt.values)
      return m === 'boundary' ? fc.constantFrom(-1, 99, 2 ** 31 - 1) : fc.constantFrom(...names)
    }
    return scalarArb(f.type, m)
  }
  // A map field: a descriptor-built root has it as a repeated entry message (option map_entry) with fields key and value.
  // (protobufjs 7 also marks some other nested types map_entry: the key and value fields decide.)
  const rt = f.resolvedType
  const entry = f.repeated && rt instanceof protobuf.Type && rt.options?.map_entry === true && rt.fields.key && rt.fields.value ? rt : undefined
  if (entry) {
    const valueType = entry.fields.value!.type
    const toEntries = (d: unknown) => Object.entries(d as Record<string, unknown>).map(([k, v]) => ({ key: k, value: v }))
    if (mode === 'valid') {
      const dict = fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9.-]{0,10}$/), scalarArb(valueType, 'valid'), { maxKeys: 3 })
      return (hint ? fc.oneof(hint, dict) : dict).map(toEntries)
    }
    // At the limits: the number of entries, or one entry whose key or value is.
    return fc.oneof(
      fc.constantFrom(64, 65, 1000).map((n) => Array.from({ length: n }, (_, i) => ({ key: `k${i}`, value: valueType === 'string' ? 'v' : 1 }))),
      fc
        .tuple(fc.oneof(fc.string({ maxLength: 200 }), fc.constantFrom('k'.repeat(129), '', '-bad', 'a b')), scalarArb(valueType, 'valid'))
        .map(([key, value]) => [{ key, value }]),
      scalarArb(valueType, 'boundary').map((value) => [{ key: 'k', value }]),
    )
  }
  let arb: fc.Arbitrary<unknown>
  if (f.repeated) {
    arb =
      mode === 'boundary'
        ? fc.oneof(
            // (100,000 only of scalars: as many messages take long to encode and say nothing more.)
            fc
              .tuple(fc.constantFrom(1024, 1025, ...(f.resolvedType instanceof protobuf.Type ? [] : [100_000])), one('valid'))
              .map(([n, v]) => Array.from({ length: n }, () => v)),
            fc.tuple(fc.array(one('valid'), { maxLength: 2 }), one('boundary')).map(([xs, x]) => [...xs, x]),
          )
        : fc.array(one('valid'), { maxLength: 4 })
  } else arb = one(mode)
  return hint && mode === 'valid' ? fc.oneof({ weight: 3, arbitrary: hint }, { weight: 1, arbitrary: arb }) : arb
}

/** Plain objects of a message type: `valid` draws every field valid-shaped; `boundary` puts exactly one field at its limits. */
export function messageArb(type: protobuf.Type, mode: Mode, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  const fields = type.fieldsArray.map((f) => f.resolve())
  if (depth > 4 || fields.length === 0) return fc.constant({})
  const record = (atLimit: string | undefined) =>
    fc.record(Object.fromEntries(fields.map((f) => [f.name, fieldArb(f, f.name === atLimit ? 'boundary' : 'valid', depth)])), {
      requiredKeys: atLimit === undefined ? [] : [atLimit],
    })
  return mode === 'valid' ? record(undefined) : fc.oneof(...fields.map((f) => record(f.name)))
}

/** Encodes a plain object as `type` (protobufjs; out-of-range numbers wrap as the wire format does). */
export function encode(type: protobuf.Type, obj: Record<string, unknown>): Uint8Array {
  return type.encode(type.fromObject(obj)).finish()
}

// ---- wire-level damage ----

/** A varint. */
function varint(n: bigint): number[] {
  const out: number[] = []
  let v = n
  do {
    let b = Number(v & 0x7fn)
    v >>= 7n
    if (v > 0n) b |= 0x80
    out.push(b)
  } while (v > 0n)
  return out
}

const tag = (field: number, wire: number) => varint((BigInt(field) << 3n) | BigInt(wire))

/** Bytes that break the encoding of `bytes`: cut, a changed byte, a field of the wrong wire type, lengths past the end, overlong varints... */
const damage: fc.Arbitrary<(bytes: Uint8Array) => Uint8Array> = fc.oneof(
  fc.nat().map((i) => (b: Uint8Array) => b.slice(0, b.length ? i % b.length : 0)),
  fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })).map(([i, v]) => (b: Uint8Array) => {
    const c = Uint8Array.from(b.length ? b : [0])
    c[i % c.length] = v
    return c
  }),
  fc.tuple(fc.integer({ min: 1, max: 12 }), fc.constantFrom(0, 1, 2, 3, 4, 5, 6, 7)).map(
    ([field, wire]) =>
      (b: Uint8Array) =>
        Uint8Array.from([...b, ...tag(field, wire), ...(wire === 2 ? [5, 1, 2] : wire === 0 ? [1] : [1, 2, 3, 4])]),
  ),
  fc.integer({ min: 1, max: 12 }).map((field) => (b: Uint8Array) => Uint8Array.from([...b, ...tag(field, 2), ...varint(2n ** 31n), 1, 2, 3])),
  fc
    .integer({ min: 1, max: 12 })
    .map((field) => (b: Uint8Array) => Uint8Array.from([...b, ...tag(field, 0), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])),
  fc.integer({ min: 1, max: 12 }).map((field) => (b: Uint8Array) => Uint8Array.from([...b, ...tag(field, 2), 4, 0xff, 0xfe, 0xc0, 0x80])),
  fc.integer({ min: 1, max: 12 }).map((field) => (b: Uint8Array) => Uint8Array.from([...b, ...tag(field, 3), ...tag(field + 1, 0), 1])),
  fc.constant((b: Uint8Array) => Uint8Array.from([...b, ...tag(0, 0), 1])),
  fc.constant((b: Uint8Array) => Uint8Array.from([...b, ...tag(2 ** 29 - 1, 0), 1, ...tag(2 ** 29, 0), 1])),
  fc.integer({ min: 1, max: 1000 }).map((depth) => (b: Uint8Array) => {
    // One message field nested `depth` deep (field 2 is a message in several request types).
    let inner: number[] = []
    for (let i = 0; i < depth; i++) inner = [...tag(2, 2), ...varint(BigInt(inner.length)), ...inner]
    return Uint8Array.from([...b, ...inner])
  }),
)

/** Metadata that is odd: ids that are too long or odd, credentials that are garbage, binary values, many or big entries. */
const METADATA: fc.Arbitrary<Array<[string, string | Buffer]>> = fc.oneof(
  { weight: 6, arbitrary: fc.constant<Array<[string, string | Buffer]>>([]) },
  {
    weight: 3,
    arbitrary: fc.array<[string, string | Buffer]>(
      fc.oneof(
        fc
          .tuple(fc.constantFrom('x-request-id', 'authorization', 'idempotency-key', 'x-custom', 'user-agent'), fc.string({ maxLength: 40 }))
          .map(([k, v]): [string, string | Buffer] => [k, v.replace(/[^\x20-\x7e]/g, '')]),
        fc.constantFrom<[string, string | Buffer]>(
          ['x-request-id', 'r'.repeat(500)],
          ['authorization', 'Bearer x'],
          ['authorization', 'Basic Zm9v'],
          ['grpc-previous-rpc-attempts', 'x'],
        ),
        fc
          .tuple(fc.constantFrom('x-bin', 'trace-bin', 'violations-bin'), fc.uint8Array({ maxLength: 40 }))
          .map(([k, u]): [string, string | Buffer] => [k, Buffer.from(u)]),
      ),
      { maxLength: 4 },
    ),
  },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 20 }).map((n) => [['x-big', 'b'.repeat(n * 1024)]] as Array<[string, string]>) },
)

/** Keeps the last `authorization` entry only: grpc-js refuses to send two (INTERNAL, before the call leaves the client). */
function oneAuthorization(md: Array<[string, string | Buffer]>): Array<[string, string | Buffer]> {
  const last = md.findLastIndex(([k]) => k === 'authorization')
  return md.filter(([k], i) => k !== 'authorization' || i === last)
}

/** The 5 MiB request of the oversized cases (the server takes at most 4 MiB): built once. */
let oversized: Uint8Array | undefined
function oversizedMessage(): Uint8Array {
  oversized ??= Uint8Array.from([...tag(1, 2), ...varint(5n * 1024n * 1024n), ...new Uint8Array(5 * 1024 * 1024).fill(0x61)])
  return oversized
}

/** Kinds and their weights in a run. */
export const GRPC_CASE_WEIGHTS = { valid: 8, boundary: 3, damaged: 5, bytes: 3, crossed: 1, oversized: 0.1, unrouted: 1 } as const

/** Every case: per method (each equally likely) valid, boundary, damaged, raw-bytes and crossed ones; unrouted ones; each with odd metadata and sometimes a 1 ms deadline. */
export function grpcCaseArb(methods: GrpcMethod[]): fc.Arbitrary<GrpcCase> {
  const perMethod = (m: GrpcMethod): fc.Arbitrary<Omit<GrpcCase, 'metadata' | 'deadlineMs'>> => {
    const valid = messageArb(m.requestType, 'valid').map((msg) => ({
      method: m.path,
      path: m.path,
      kind: 'valid',
      bytes: encode(m.requestType, msg),
      message: msg,
    }))
    const boundary = messageArb(m.requestType, 'boundary').map((msg) => ({
      method: m.path,
      path: m.path,
      kind: 'boundary',
      bytes: encode(m.requestType, msg),
      message: msg,
    }))
    const damaged = fc
      .tuple(messageArb(m.requestType, 'valid'), damage)
      .map(([msg, d]) => ({ method: m.path, path: m.path, kind: 'damaged', bytes: d(encode(m.requestType, msg)), message: msg }))
    const bytes = fc.uint8Array({ maxLength: 256 }).map((b) => ({ method: m.path, path: m.path, kind: 'bytes', bytes: b }))
    const crossed = fc.constantFrom(...methods).chain((other) =>
      messageArb(other.requestType, 'valid').map((msg) => ({
        method: m.path,
        path: m.path,
        kind: 'crossed',
        bytes: encode(other.requestType, msg),
        message: { [other.requestType.name]: msg },
      })),
    )
    const big = fc.constant({ method: m.path, path: m.path, kind: 'oversized', bytes: oversizedMessage() })
    const w = GRPC_CASE_WEIGHTS
    return fc.oneof(
      { weight: w.valid * 10, arbitrary: valid },
      { weight: w.boundary * 10, arbitrary: boundary },
      { weight: w.damaged * 10, arbitrary: damaged },
      { weight: w.bytes * 10, arbitrary: bytes },
      { weight: w.crossed * 10, arbitrary: crossed },
      { weight: w.oversized * 10, arbitrary: big },
    )
  }
  const services = [...new Set(methods.map((m) => m.path.split('/')[1]!))]
  const unrouted = fc
    .oneof(
      fc.constantFrom(...services).map((s) => `/${s}/Nope`),
      fc.constantFrom(
        '/apmatrix.v1.Nope/GetHost',
        '/x/y',
        '/apmatrix.v1.HostService/',
        '/apmatrix.v1.HostService/gethost',
        '/grpc.reflection.v1.ServerReflection/Nope',
      ),
    )
    .chain((path) => fc.uint8Array({ maxLength: 16 }).map((b) => ({ method: 'unrouted', path, kind: 'unrouted', bytes: b })))
  const call = fc.oneof({ weight: 20, arbitrary: fc.oneof(...methods.map(perMethod)) }, { weight: GRPC_CASE_WEIGHTS.unrouted, arbitrary: unrouted })
  return fc
    .tuple(call, METADATA, fc.oneof({ weight: 9, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.constantFrom(1, 1, 1, 0) }))
    .map(([c, metadata, deadline]) => ({ ...c, metadata: oneAuthorization(metadata), ...(deadline !== null ? { deadlineMs: deadline } : {}) }))
}
