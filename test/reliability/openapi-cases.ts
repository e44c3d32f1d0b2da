/**
 * REST fuzz cases generated from the service's own OpenAPI document (`GET /openapi.json`): for every
 * operation (path x method) a request whose path parameters, query, headers and body come from the
 * operation's schemas, in three kinds: valid-shaped (drawn inside the schema, with names and ids the
 * emulated hosts really have, so requests get past validation), boundary (lengths, counts and numbers at
 * and just past the schema's limits) and malformed (a node replaced by a value of the wrong type, an
 * unknown or a missing property, bodies that are not JSON, bad headers, odd paths, oversized values,
 * methods the route does not have). Besides: paths that match no route, and raw requests that are not
 * valid HTTP/1.1 at all (sent on a socket by test/reliability/http-sender.ts).
 */
import fs from 'node:fs'
import path from 'node:path'
import fc from 'fast-check'
import { projectRoot } from '../../src/paths.js'

/** One generated request. `raw` (bytes on a new socket) replaces method/path/headers/body when set. */
export interface RestCase {
  /** The operation it was generated from (`PUT /v1/hosts/{host}/masks`), or `unrouted` / `raw`. */
  op: string
  /** `valid` | `boundary` | `malformed` | `unrouted` | `raw`. */
  kind: string
  method: string
  /** Path and query exactly as sent (percent-encoded; at most latin1 bytes 0x21..0xff). */
  path: string
  headers: Record<string, string>
  body?: string
  /** A raw request (latin1), written on its own connection. */
  raw?: string
  /** Half-close the connection after writing `raw` (it is incomplete: the server would wait for the rest). */
  halfClose?: boolean
}

// ---- the OpenAPI document (the few parts used here) ----

/** A JSON schema as @fastify/swagger writes it (OpenAPI 3.0). */
export interface Schema {
  type?: string
  $ref?: string
  properties?: Record<string, Schema>
  required?: string[]
  additionalProperties?: boolean | Schema
  maxProperties?: number
  items?: Schema
  maxItems?: number
  minItems?: number
  minLength?: number
  maxLength?: number
  pattern?: string
  minimum?: number
  maximum?: number
  enum?: unknown[]
  anyOf?: Schema[]
  oneOf?: Schema[]
  nullable?: boolean
}

interface Parameter {
  in: 'path' | 'query' | 'header'
  name: string
  required?: boolean
  schema: Schema
}

interface Operation {
  parameters?: Parameter[]
  requestBody?: { required?: boolean; content: Record<string, { schema: Schema }> }
}

/** The parts of an OpenAPI 3.0 document read here. */
export interface OpenApiDoc {
  paths: Record<string, Record<string, Operation>>
  components?: { schemas?: Record<string, Schema> }
}

/** One operation of the document. */
export interface DocOperation {
  key: string
  method: string
  template: string
  params: Parameter[]
  /** content type -> body schema (none for operations without a body). */
  bodies: Array<[string, Schema]>
  bodyRequired: boolean
}

const METHODS = ['get', 'put', 'post', 'patch', 'delete', 'head', 'options']

/** Every operation of the document, in document order. */
export function operationsOf(doc: OpenApiDoc): DocOperation[] {
  const out: DocOperation[] = []
  for (const [template, item] of Object.entries(doc.paths)) {
    for (const [m, op] of Object.entries(item)) {
      if (!METHODS.includes(m)) continue
      out.push({
        key: `${m.toUpperCase()} ${template}`,
        method: m.toUpperCase(),
        template,
        params: op.parameters ?? [],
        bodies: Object.entries(op.requestBody?.content ?? {}).map(([type, c]) => [type, c.schema]),
        bodyRequired: op.requestBody?.required === true,
      })
    }
  }
  return out
}

// ---- values the emulated hosts really have (so valid-shaped requests get past the lookups) ----

const UUIDS = ['4b0e8bd4-2a4b-4d36-9d43-5c2a3c8e1a01', '11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222222']
const IDS = [0, 1, 2, 4, 5, 6, 7, 10, 71, 0xab, 0xff]
const APQNS = ['00.0004', '05.0004', '06.0005', '07.00ab', '01.0001', '02.000a', '05.0047', 'ff.ffff', '99.0001']
const SYSFS_PATHS = [
  '/sys/bus/ap/apmask',
  '/sys/bus/ap/aqmask',
  '/sys/bus/ap/ap_max_domain_id',
  '/sys/bus/ap/bindings',
  '/sys/bus/ap/scans',
  '/sys/bus/ap/devices/card05/online',
  '/sys/bus/ap/devices/05.0004/online',
  '/sys/bus/ap/devices/05.0004/reset',
  '/sys/bus/ap/devices/00.0004/request_count',
  '/sys/bus/ap/drivers/vfio_ap/bind',
  '/sys/bus/ap/drivers/cex4queue/unbind',
  '/sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create',
  `/sys/devices/vfio_ap/matrix/${UUIDS[0]}/assign_adapter`,
  `/sys/devices/vfio_ap/matrix/${UUIDS[0]}/assign_domain`,
  `/sys/devices/vfio_ap/matrix/${UUIDS[0]}/matrix`,
  `/sys/devices/vfio_ap/matrix/${UUIDS[0]}/remove`,
  '/sys/bus/ap/../ap/apmask',
  '/sys/bus/ap/devices',
  '/etc/passwd',
]
const SYSFS_VALUES = ['-5\n', '+5\n', '-5,-6\n', '1\n', '0\n', '5\n', '0x47\n', `${UUIDS[0]}\n`, '05.0004\n', 'garbage', '', '+300\n']
const MASKS = ['-5', '+5', '-5,-6', '+0-255', '-0-255', '0x', `0x${'f'.repeat(64)}`, `0x${'0'.repeat(64)}`, '+4', '-71', '-0x47', '+5-3', '0X12']

const idArb = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...IDS) }, { weight: 1, arbitrary: fc.constantFrom('0x47', '71', '0x05') })

/**
 * Domain hints by field or parameter name, drawn instead of (three times in four) the schema's own
 * values in valid-shaped requests: hosts, devices, APQNs, sysfs paths and ids the emulated hosts have,
 * so that requests get past validation and lookups to the service's logic. Wrong values come from the
 * boundary and malformed kinds.
 */
const HINTS: Record<string, fc.Arbitrary<unknown>> = {
  host: fc.constantFrom('local', 'local', 'local', 'sf', 'sf', 'nohost'),
  uuid: fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...UUIDS) },
    { weight: 1, arbitrary: fc.uuid({ version: 4 }) },
    { weight: 1, arbitrary: fc.constant(UUIDS[0]!.toUpperCase()) },
  ),
  owner: fc.constantFrom('team-a', 'team-b', 'none', UUIDS[0]!),
  guest: fc.constantFrom('vm1', 'vm2'),
  apqn: fc.constantFrom(...APQNS),
  adapter: fc.constantFrom('0', '5', '7', '0x05'),
  domain: fc.constantFrom('4', '71', '0x47'),
  apid: fc.constantFrom(0, 1, 5, 7, 8, 0x20),
  apqi: fc.constantFrom(1, 4, 5, 0x10, 71),
  path: fc.constantFrom(...SYSFS_PATHS),
  value: fc.constantFrom(...SYSFS_VALUES),
  apmask: fc.oneof(fc.constantFrom(...MASKS), fc.array(idArb, { maxLength: 4 })),
  aqmask: fc.oneof(fc.constantFrom(...MASKS), fc.array(idArb, { maxLength: 4 })),
  adapters: fc.array(idArb, { maxLength: 3 }),
  domains: fc.array(idArb, { maxLength: 3 }),
  controlDomains: fc.array(idArb, { maxLength: 2 }),
  count: fc.integer({ min: 1, max: 6 }),
  perSecond: fc.constantFrom(0, 0, 1, 50, 1000),
  format: fc.constantFrom('mdevctl', 'libvirt-nodedev', 'libvirt-hostdev', 'apmatrix', 'libvirt'),
  label: fc.constantFrom('a=b', 'a=b,c=d', 'env=prod'),
  kind: fc.constantFrom('mdev', 'masks', 'mdev,masks', 'host'),
  type: fc.constantFrom('MdevDefined', 'DriftDetected,MasksApplied', 'MdevStarted'),
  since: fc.constantFrom('0', '1', '5', '999999'),
  'last-event-id': fc.constantFrom('0', '3', '40'),
  'if-match': fc.constantFrom('*', '"1"', '"abc", "def"', 'W/"1"'),
  'if-none-match': fc.constantFrom('*', '"1"', '"a", "b"', 'W/"x"'),
  'idempotency-key': fc.constantFrom('k1', 'k2', 'k3'),
  afterId: fc.constantFrom('0', '1', '40'),
  target: fc.constantFrom('local', `mdev/${UUIDS[0]}`, 'hosts/local/import'),
  labels: fc.dictionary(fc.constantFrom('team', 'env', 'app.kubernetes.io/name'), fc.constantFrom('a', 'prod', ''), { maxKeys: 3 }),
}

/** Example documents for bodies the document leaves open (no schema of their own): the repository's examples/. */
const EXAMPLE_BODIES: Record<string, string[]> = {
  'application/json': ['mdevctl-list-defined.json', 'mdevctl-vfio-ap.json', 'desired-state.json'].map((f) =>
    fs.readFileSync(path.join(projectRoot, 'examples', f), 'utf8'),
  ),
  'application/xml': [fs.readFileSync(path.join(projectRoot, 'examples/mdev-nodedev.xml'), 'utf8')],
}
EXAMPLE_BODIES['text/xml'] = EXAMPLE_BODIES['application/xml']!

// ---- schema -> values ----

type Mode = 'valid' | 'boundary'

function resolve(doc: OpenApiDoc, s: Schema): Schema {
  if (!s.$ref) return s
  const name = s.$ref.replace('#/components/schemas/', '')
  const r = doc.components?.schemas?.[name]
  if (!r) throw new Error(`unresolved $ref ${s.$ref}`)
  return resolve(doc, r)
}

/**
 * Any string of at most 40 characters: ASCII, full Unicode (lone surrogates included) or grapheme
 * clusters. One instance: fast-check builds a table of every code point per character arbitrary.
 */
const ANY_STRING = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 40 }))
const anyString = (maxLength: number): fc.Arbitrary<string> => (maxLength >= 40 ? ANY_STRING : ANY_STRING.map((x) => x.slice(0, maxLength)))

function stringArb(s: Schema, mode: Mode): fc.Arbitrary<string> {
  const min = s.minLength ?? 0
  const max = s.maxLength ?? 64
  if (mode === 'boundary') {
    const at = (n: number) => fc.constantFrom('a', '0', 'é', '\u{1F600}').map((c) => c.repeat(Math.max(0, n)).slice(0, Math.max(0, n)))
    return fc.oneof(at(max), at(max + 1), at(min), at(min - 1), at(max * 4 + 100))
  }
  if (s.pattern) {
    const re = new RegExp(s.pattern)
    return fc.stringMatching(re, { size: 'small' }).filter((x) => x.length >= min && x.length <= max)
  }
  return fc.oneof(
    fc.string({ minLength: min, maxLength: Math.min(max, 40) }),
    anyString(Math.min(max, 40)).filter((x) => x.length >= min),
  )
}

function numberArb(s: Schema, mode: Mode): fc.Arbitrary<number> {
  const min = s.minimum ?? -(2 ** 31)
  const max = s.maximum ?? 2 ** 31
  if (mode === 'boundary') return fc.constantFrom(min, max, min - 1, max + 1, min + 0.5, 2 ** 53 + 2, -(2 ** 53) - 2, 1e308, -0)
  return s.type === 'integer' ? fc.integer({ min, max: Math.min(max, Number.MAX_SAFE_INTEGER) }) : fc.double({ min, max, noNaN: true })
}

/** Values of schema `s`: inside it (`valid`), or at and just past its limits (`boundary`). */
export function valueArb(doc: OpenApiDoc, schema: Schema, mode: Mode, name?: string, depth = 0): fc.Arbitrary<unknown> {
  const s = resolve(doc, schema)
  const own = schemaValueArb(doc, s, mode, depth)
  const hint = name !== undefined ? HINTS[name] : undefined
  const base = hint && mode === 'valid' ? fc.oneof({ weight: 3, arbitrary: hint }, { weight: 1, arbitrary: own }) : own
  return s.nullable ? fc.oneof({ weight: 5, arbitrary: base }, { weight: 1, arbitrary: fc.constant(null) }) : base
}

function schemaValueArb(doc: OpenApiDoc, s: Schema, mode: Mode, depth: number): fc.Arbitrary<unknown> {
  const alts = s.anyOf ?? s.oneOf
  if (alts) return fc.oneof(...alts.map((a) => valueArb(doc, a, mode, undefined, depth)))
  if (s.enum)
    return mode === 'boundary' ? fc.constantFrom(...s.enum.map((e) => `${String(e)}x`), '', String(s.enum[0]).toUpperCase()) : fc.constantFrom(...s.enum)
  switch (s.type) {
    case 'string':
      return stringArb(s, mode)
    case 'integer':
    case 'number':
      return numberArb(s, mode)
    case 'boolean':
      return fc.boolean()
    case 'array': {
      const item = s.items ? valueArb(doc, s.items, 'valid', undefined, depth + 1) : fc.jsonValue()
      const max = s.maxItems ?? 16
      if (mode === 'valid') return fc.array(item, { minLength: s.minItems ?? 0, maxLength: Math.min(max, 6) })
      // At the limits: the count (a few distinct items repeated up to it), or one item at its own limits.
      const counted = fc
        .tuple(fc.constantFrom(max, max + 1, s.minItems ?? 0), fc.array(item, { minLength: 1, maxLength: 8 }))
        .map(([n, few]) => Array.from({ length: n }, (_, i) => few[i % few.length]))
      if (!s.items) return counted
      const oneAtLimit = fc.tuple(fc.array(item, { maxLength: 3 }), valueArb(doc, s.items, 'boundary', undefined, depth + 1)).map(([xs, b]) => [...xs, b])
      return fc.oneof(counted, oneAtLimit)
    }
    case 'object':
    case undefined: {
      if (depth > 6) return fc.constant({})
      const props = Object.entries(s.properties ?? {})
      const required = new Set(s.required ?? [])
      const requiredKeys = props.map(([k]) => k).filter((k) => required.has(k))
      const recordWith = (atLimit: string | undefined) =>
        fc.record(Object.fromEntries(props.map(([k, v]) => [k, valueArb(doc, v, k === atLimit ? 'boundary' : 'valid', k, depth + 1)])), {
          requiredKeys: atLimit === undefined ? requiredKeys : [...new Set([...requiredKeys, atLimit])],
        })
      const extra = s.additionalProperties
      const dictionary = (count: fc.Arbitrary<number>, valueMode: Mode) => {
        if (!extra || typeof extra !== 'object') return undefined
        const keys = fc.oneof(fc.stringMatching(/^[a-z][a-z0-9._/-]{0,20}[a-z0-9]$/), anyString(20))
        const vals = valueArb(doc, extra, valueMode, undefined, depth + 1)
        return count.chain((n) => fc.uniqueArray(fc.tuple(keys, vals), { minLength: n, maxLength: n, selector: ([k]) => k }).map(Object.fromEntries))
      }
      const withDict = (r: fc.Arbitrary<Record<string, unknown>>, d: fc.Arbitrary<unknown> | undefined) =>
        d ? (props.length ? fc.tuple(r, d).map(([a, b]) => ({ ...(b as object), ...a })) : d) : r
      if (mode === 'valid') return withDict(recordWith(undefined), dictionary(fc.integer({ min: 0, max: Math.min(s.maxProperties ?? 16, 4) }), 'valid'))
      // At the limits: one property (and only that one), or the number of properties, or one of their values.
      const max = s.maxProperties ?? 16
      const alternatives = [
        ...props.map(([k]) => withDict(recordWith(k), undefined)),
        ...[dictionary(fc.constantFrom(max, max + 1), 'valid'), dictionary(fc.constant(1), 'boundary')].flatMap((d) =>
          d ? [withDict(recordWith(undefined), d)] : [],
        ),
      ]
      return alternatives.length ? fc.oneof(...alternatives) : fc.constant({})
    }
    default:
      return fc.jsonValue()
  }
}

// ---- malformed values ----

/** Values of every JSON type and of none (what a wrong-typed field gets). */
const wrongValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(null, true, false, 0, -1, 1.5, 1e308, -1e308, 2 ** 53 + 1, '', ' ', '\u0000', '\ud800', [], {}, [[]], { a: { b: {} } }),
  fc.constantFrom('x'.repeat(70_000), 'é'.repeat(5000)),
  fc.integer({ min: 2, max: 3000 }).map((n) => JSON.parse(`${'['.repeat(n)}${']'.repeat(n)}`) as unknown),
  fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty'),
)

/** Every node of a JSON value, as paths (arrays of keys). */
function nodes(v: unknown, at: Array<string | number> = [], out: Array<Array<string | number>> = []): Array<Array<string | number>> {
  out.push(at)
  if (Array.isArray(v)) for (const [i, x] of v.entries()) nodes(x, [...at, i], out)
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) nodes(x, [...at, k], out)
  return out
}

function setAt(v: unknown, at: Array<string | number>, f: (old: unknown) => unknown): unknown {
  if (at.length === 0) return f(v)
  const [k, ...rest] = at
  if (Array.isArray(v)) return v.map((x, i) => (i === k ? setAt(x, rest, f) : x))
  const o = v as Record<string, unknown>
  return { ...o, [k as string]: setAt(o[k as string], rest, f) }
}

/** A valid-shaped value broken in one place: a node of the wrong type, an unknown property, a property removed. */
function malformedArb(valid: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
  return fc
    .tuple(valid, fc.nat(), fc.constantFrom('replace', 'add', 'remove'), wrongValue, fc.constantFrom('extra', '__proto__', 'constructor', '', 'spec'))
    .map(([v, i, how, wrong, key]) => {
      const all = nodes(v)
      const at = all[i % all.length]!
      if (how === 'replace') return setAt(v, at, () => wrong)
      if (how === 'add') return setAt(v, at, (o) => (o && typeof o === 'object' && !Array.isArray(o) ? { ...o, [key]: wrong } : wrong))
      if (at.length === 0) return undefined
      return setAt(v, at.slice(0, -1), (o) => {
        if (Array.isArray(o)) return o.filter((_, j) => j !== at[at.length - 1])
        const { [at[at.length - 1] as string]: _gone, ...rest } = o as Record<string, unknown>
        return rest
      })
    })
}

/** Bodies that are not the JSON of anything (or not JSON at all). */
const badBodyText: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '',
    ' ',
    'null',
    '{',
    '{"spec":',
    '[1,2',
    '{"a":1}{"b":2}',
    '\ufeff{}',
    '{"a":1,"a":2}',
    'NaN',
    '1e400',
    '"\\ud800"',
    '{"__proto__":{"x":1}}',
  ),
  fc.constantFrom('{"constructor":{"prototype":{"x":1}}}', `{"a":"${'x'.repeat(2 * 1024 * 1024)}"}`, `[${'1,'.repeat(200_000)}1]`),
  fc.integer({ min: 100, max: 20_000 }).map((n) => `${'['.repeat(n)}${']'.repeat(n)}`),
  fc.integer({ min: 100, max: 20_000 }).map((n) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`),
  fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString('latin1')),
  fc.string({ unit: 'binary', maxLength: 64 }),
  fc.constantFrom('<mdevs/>', '<?xml version="1.0"?><device><name>x</name></device>', '<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'),
)

const CONTENT_TYPES = [
  'application/json',
  'application/json; charset=utf-8',
  'application/merge-patch+json',
  'application/xml',
  'text/xml',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/json; charset=latin1',
  'application/jsonx',
  'APPLICATION/JSON',
  '',
  ';;;',
  'application/json; charset="',
]

// ---- headers, query and path ----

/** Header values the HTTP client accepts (no CR, LF, NUL; latin1), and some that are too long. */
const headerValue: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.string({ maxLength: 40 }).map((s) => s.replace(/[^\t\x20-\x7e]/g, '')) },
  { weight: 3, arbitrary: fc.constantFrom('\u00e9\u00ff', '""', ',,,', '*, "a"', 'W/', ' ', '\t') },
  { weight: 1, arbitrary: fc.constantFrom('x'.repeat(2000), 'x'.repeat(9000)) },
)

const BAD_HEADERS: fc.Arbitrary<Record<string, string>> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record(
      {
        origin: fc.constantFrom('http://evil.example', 'null', 'http://127.0.0.1:1', 'file://', 'x'),
        host: fc.constantFrom('evil.example', 'localhost:1', '127.0.0.1', '[::1]:80', '', 'a b', '127.0.0.1.nip.io'),
        authorization: fc.constantFrom('Bearer x', 'Basic Zm9vOmJhcg==', 'Bearer ', 'Bearer eyJhbGciOiJub25lIn0.e30.', 'x'.repeat(5000)),
        'x-request-id': fc.oneof(headerValue, fc.constantFrom('id-1', 'x'.repeat(300))),
        accept: fc.constantFrom('application/xml', 'text/event-stream', '*/*;q=0', 'image/png', ''),
        'accept-encoding': fc.constantFrom('gzip', 'br', 'identity;q=0', 'x'),
        'content-encoding': fc.constantFrom('gzip', 'deflate', 'br', 'x'),
        'if-match': headerValue,
        'if-none-match': headerValue,
        'idempotency-key': headerValue,
        'last-event-id': headerValue,
        cookie: headerValue,
        range: fc.constantFrom('bytes=0-1', 'bytes=x', 'items=0-'),
      },
      { requiredKeys: [] },
    ),
  },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }).map((n) => ({ 'x-big': 'h'.repeat(n * 9000) })) },
  { weight: 1, arbitrary: fc.integer({ min: 50, max: 400 }).map((n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`x-h${i}`, 'v'.repeat(40)]))) },
)

/** A path parameter value that is odd: empty, dot segments, bad or encoded slashes, over-long, control bytes. */
const oddParam: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '%ff',
    '%',
    '%zz',
    '%2f',
    '%2F..%2F',
    '..',
    '.',
    '%00',
    '%0a',
    '%c0%af',
    '%e2%80%ae',
    '%ef%bf%bf',
    '%ed%a0%80',
    '+',
    '%20',
    '~',
    'a;b',
    'a%3Fb',
  ),
  fc.integer({ min: 190, max: 210 }).map((n) => 'h'.repeat(n)),
  fc.constantFrom('h'.repeat(5000), 'x'.repeat(20_000)),
  fc.string({ unit: 'binary', maxLength: 12 }).map((s) => encodeURIComponent(s.replace(/[\ud800-\udfff]/g, 'x'))),
)

/** Percent-encoding of any text; a lone surrogate becomes its WTF-8 bytes (`%ED%A0%80`), which no UTF-8 decoder accepts. */
const encode = (v: unknown): string =>
  (typeof v === 'string' ? v : (JSON.stringify(v) ?? '')).replace(/[\ud800-\udbff][\udc00-\udfff]|[\s\S]/g, (ch) => {
    const u = ch.charCodeAt(0)
    if (ch.length === 1 && u >= 0xd800 && u <= 0xdfff)
      return `%${(0xe0 | (u >> 12)).toString(16)}%${(0x80 | ((u >> 6) & 0x3f)).toString(16)}%${(0x80 | (u & 0x3f)).toString(16)}`.toUpperCase()
    return encodeURIComponent(ch)
  })

/** The query string of `entries` (already encoded pairs). */
const queryOf = (pairs: Array<[string, string]>): string => (pairs.length ? `?${pairs.map(([k, v]) => `${k}=${v}`).join('&')}` : '')

function paramValues(doc: OpenApiDoc, op: DocOperation, where: 'path' | 'query' | 'header', mode: Mode): fc.Arbitrary<Record<string, unknown>> {
  const ps = op.params.filter((p) => p.in === where)
  return fc.record(Object.fromEntries(ps.map((p) => [p.name, valueArb(doc, p.schema, mode, p.name)])), {
    requiredKeys: ps.filter((p) => p.required || where === 'path').map((p) => p.name),
  })
}

function pathOf(template: string, params: Record<string, string>): string {
  return template.replace(/\{([^}]+)\}/g, (_, n: string) => params[n] ?? '')
}

const toHeaderText = (v: unknown): string => (typeof v === 'string' ? v : (JSON.stringify(v) ?? '')).replace(/[^\t\x20-\x7e\x80-\xff]/g, '?')

/** A schema that says nothing of its value (a body the service parses itself). */
const isOpen = (s: Schema): boolean => !s.type && !s.properties && !s.anyOf && !s.oneOf && !s.$ref && !s.enum

/** A body of media type `type`: the JSON of a value of the schema, or for an open schema an example document of that type. */
function wellFormedBody(doc: OpenApiDoc, type: string, schema: Schema, mode: Mode): fc.Arbitrary<{ type: string; text: string }> {
  const examples = EXAMPLE_BODIES[type] ?? []
  const text = isOpen(schema) && examples.length ? fc.constantFrom(...examples) : valueArb(doc, schema, mode).map((v) => JSON.stringify(v))
  return text.map((t) => ({ type, text: t }))
}

/** A body broken in one place: a value with a wrong node, or an example document cut short or with a byte changed. */
function malformedBody(doc: OpenApiDoc, type: string, schema: Schema): fc.Arbitrary<{ type: string; text: string }> {
  const examples = EXAMPLE_BODIES[type] ?? []
  if (isOpen(schema) && examples.length) {
    return fc
      .tuple(fc.constantFrom(...examples), fc.nat(), fc.constantFrom('cut', 'flip', 'repeat'), fc.integer({ min: 0, max: 255 }))
      .map(([ex, i, how, byte]) => {
        const at = i % ex.length
        const text =
          how === 'cut'
            ? ex.slice(0, at)
            : how === 'flip'
              ? ex.slice(0, at) + String.fromCharCode(byte) + ex.slice(at + 1)
              : ex.slice(0, at) + ex.slice(at / 2, at) + ex.slice(at)
        return { type, text }
      })
  }
  return malformedArb(valueArb(doc, schema, 'valid')).map((v) => ({ type, text: v === undefined ? '' : JSON.stringify(v) }))
}

/** A body of any media type that is not what it says (or not JSON at all). */
const badBody = fc.tuple(fc.constantFrom(...CONTENT_TYPES), badBodyText).map(([type, text]) => ({ type, text }))

/** The REST cases of one operation. */
export function operationCase(doc: OpenApiDoc, op: DocOperation, kind: 'valid' | 'boundary' | 'malformed'): fc.Arbitrary<RestCase> {
  const mode: Mode = kind === 'boundary' ? 'boundary' : 'valid'
  const pathParams = paramValues(doc, op, 'path', 'valid')
  const query = paramValues(doc, op, 'query', mode)
  const headers = paramValues(doc, op, 'header', mode)
  const body: fc.Arbitrary<{ type?: string; text?: string }> =
    op.bodies.length === 0
      ? kind === 'malformed'
        ? fc.oneof(fc.constant({}), badBody)
        : fc.constant({})
      : kind === 'malformed'
        ? fc.oneof(
            { weight: 4, arbitrary: fc.oneof(...op.bodies.map(([type, schema]) => malformedBody(doc, type, schema))) },
            { weight: 2, arbitrary: badBody },
            {
              weight: 1,
              arbitrary: fc
                .oneof(...op.bodies.map(([, schema]) => wellFormedBody(doc, 'application/json', schema, 'valid')))
                .chain((b) => fc.constantFrom(...CONTENT_TYPES).map((type) => ({ ...b, type }))),
            },
            { weight: 1, arbitrary: fc.constant({}) },
          )
        : fc.oneof(...op.bodies.map(([type, schema]) => wellFormedBody(doc, type, schema, mode)))
  const malformed = kind === 'malformed'
  return fc
    .record({
      pathParams: malformed ? fc.tuple(pathParams, fc.option(oddParam, { freq: 2 })) : pathParams.map((p) => [p, null] as const),
      query: malformed
        ? fc.tuple(
            query,
            fc.array(
              fc.tuple(
                fc.constantFrom('limit', 'dryRun', 'view', 'force', 'extra', '__proto__', 'since', 'format', 'a[b]', ''),
                fc.oneof(oddParam, fc.constantFrom('true', '1', '')),
              ),
              {
                maxLength: 3,
              },
            ),
          )
        : query.map((q) => [q, []] as const),
      headers: malformed ? fc.tuple(headers, fc.option(BAD_HEADERS, { freq: 2 })) : headers.map((h) => [h, null] as const),
      body,
      method: malformed
        ? fc.oneof(
            { weight: 6, arbitrary: fc.constant(op.method) },
            { weight: 1, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS', 'TRACE', 'PROPFIND', 'FOO') },
          )
        : fc.constant(op.method),
    })
    .chain((r) => {
      const [pp, odd] = r.pathParams
      const names = Object.keys(pp)
      return fc.nat().map((i) => {
        const params: Record<string, string> = Object.fromEntries(Object.entries(pp).map(([k, v]) => [k, encode(v)]))
        if (odd !== null && names.length) params[names[i % names.length]!] = odd
        const [q, extra] = r.query
        const pairs: Array<[string, string]> = [
          ...Object.entries(q).flatMap(
            ([k, v]): Array<[string, string]> => (Array.isArray(v) ? v.map((x) => [k, encode(x)] as [string, string]) : [[k, encode(v)]]),
          ),
          ...extra,
        ]
        const [h, bad] = r.headers
        const hs: Record<string, string> = Object.fromEntries(Object.entries(h).map(([k, v]) => [k, toHeaderText(v)]))
        if (bad) Object.assign(hs, bad)
        if (r.body.type !== undefined && r.body.type !== '') hs['content-type'] = r.body.type
        const c: RestCase = { op: op.key, kind, method: r.method, path: pathOf(op.template, params) + queryOf(pairs), headers: hs }
        if (r.body.text !== undefined) c.body = r.body.text
        return c
      })
    })
}

/** Requests to paths that are no route, or that are routes spelled oddly. */
function unroutedCase(ops: DocOperation[]): fc.Arbitrary<RestCase> {
  const templates = [...new Set(ops.map((o) => o.template))]
  const path = fc.oneof(
    fc.constantFrom(
      '/',
      '//',
      '/v1',
      '/v1/',
      '/v2/hosts',
      '/V1/HOSTS',
      '/v1/hosts/',
      '/v1//hosts',
      '/v1/hosts/local/',
      '/v1/hosts/local/../local',
      '/v1/hosts/./local',
    ),
    fc.constantFrom(
      '/healthz/',
      '/readyz?x=1',
      '/metrics?name[]=x',
      '/openapi.json/x',
      '/docs/../openapi.json',
      '/ui/../../etc/passwd',
      '/ui/%2e%2e/%2e%2e/etc/passwd',
      '/docs/static/x',
    ),
    fc.constantFrom('/v1/hosts/local;x', '/v1/hosts/local%00', '/v1/hosts/%ff', '/v1/hosts/local?%ff', '/v1/hosts?a=%', '/v1/hosts#frag', '/%2e%2e/v1/hosts'),
    fc.tuple(fc.constantFrom(...templates), oddParam).map(([t, p]) => t.replace(/\{[^}]+\}/g, p)),
    fc.tuple(fc.constantFrom(...templates), fc.webSegment()).map(([t, s]) => `${t.replace(/\{[^}]+\}/g, 'local')}/${s}`),
    fc.integer({ min: 1, max: 5 }).map((n) => `/v1/hosts?q=${'q'.repeat(n * 5000)}`),
    fc.integer({ min: 100, max: 3000 }).map((n) => `/v1/hosts/local/mdevs?${Array.from({ length: n }, (_, i) => `a${i}=1`).join('&')}`),
  )
  return fc
    .record({
      path,
      method: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS', 'TRACE', 'PROPFIND', 'M-SEARCH'),
      headers: fc.option(BAD_HEADERS, { nil: undefined }),
    })
    .map(({ path, method, headers }) => ({ op: 'unrouted', kind: 'unrouted', method, path, headers: headers ?? {} }))
}

/**
 * Requests that are not valid HTTP/1.1 (or barely are), written on a socket as they are. Complete ones
 * ask for `connection: close` (the server ends the connection after its answer); incomplete ones (a body
 * announced and not sent, bytes that are no request) are followed by a half-close, as a client that
 * gives up would do, so the server sees the end of its input instead of waiting for more.
 */
function rawCase(ops: DocOperation[]): fc.Arbitrary<RestCase> {
  const target = fc.constantFrom(...ops.map((o) => o.template.replace('{host}', 'local').replace(/\{[^}]+\}/g, UUIDS[0]!)))
  const CRLF = '\r\n'
  const H = 'host: 127.0.0.1'
  const C = 'connection: close'
  const req = (line: string, headers: string[], body = '') => `${line}${CRLF}${headers.join(CRLF)}${CRLF}${CRLF}${body}`
  const json = '{"spec":{}}'
  const J = 'content-type: application/json'
  const complete = (a: fc.Arbitrary<string>) => a.map((raw) => ({ raw, halfClose: false }))
  const incomplete = (a: fc.Arbitrary<string>) => a.map((raw) => ({ raw, halfClose: true }))
  const raw = fc.oneof(
    complete(target.map((p) => req(`GET ${p} HTTP/1.0`, []))),
    complete(target.map((p) => req(`GET ${p}`, [H]))),
    complete(target.map((p) => req(`GET ${p} HTTP/1.1`, [C]))),
    complete(target.map((p) => req(`POST ${p} HTTP/1.1`, [C, J, `content-length: ${json.length}`], json))),
    complete(target.map((p) => req(`GET ${p} HTTP/1.1`, [H, C, H.replace('127.0.0.1', 'evil.example')]))),
    complete(target.map((p) => req(`GET ${p} HTTP/2.0`, [H, C]))),
    complete(target.map((p) => req(`GET ${p} HTTP/9.9`, [H, C]))),
    complete(target.map((p) => req(`get ${p} HTTP/1.1`, [H, C]))),
    complete(target.map((p) => req(`GET  ${p}  HTTP/1.1`, [H, C]))),
    complete(target.map((p) => `GET ${p} HTTP/1.1\n${H}\n${C}\n\n`)),
    complete(target.map((p) => req(`GET ${p} HTTP/1.1`, [H, C, 'x bad: 1']))),
    complete(target.map((p) => req(`GET ${p} HTTP/1.1`, [H, C, ' folded: continuation']))),
    complete(target.map((p) => req(`GET ${p} HTTP/1.1`, [H, C, 'x-nul: a\u0000b']))),
    complete(target.map((p) => req(`GET ${p}\u0000 HTTP/1.1`, [H, C]))),
    complete(target.map((p) => req(`POST ${p} HTTP/1.1`, [H, C, J, 'content-length: 5', 'content-length: 6'], json))),
    complete(target.map((p) => req(`POST ${p} HTTP/1.1`, [H, C, J, 'content-length: -1'], json))),
    complete(target.map((p) => req(`POST ${p} HTTP/1.1`, [H, C, J, 'content-length: 99999999999999999999'], json))),
    complete(target.map((p) => req(`POST ${p} HTTP/1.1`, [H, C, J, 'content-length: 2'], json))),
    complete(target.map((p) => req(`POST ${p} HTTP/1.1`, [H, C, J, 'transfer-encoding: chunked', 'content-length: 11'], `b\r\n${json}\r\n0\r\n\r\n`))),
    complete(target.map((p) => req(`POST ${p} HTTP/1.1`, [H, C, J, 'transfer-encoding: chunked'], 'zz\r\nxx\r\n0\r\n\r\n'))),
    complete(target.map((p) => req(`POST ${p} HTTP/1.1`, [H, C, J, 'transfer-encoding: gzip, chunked'], `b\r\n${json}\r\n0\r\n\r\n`))),
    complete(target.map((p) => req(`PUT ${p} HTTP/1.1`, [H, C, J, 'expect: 100-continue', `content-length: ${json.length}`], json))),
    complete(target.map((p) => req(`GET ${p} HTTP/1.1`, [H, 'connection: upgrade, close', 'upgrade: h2c', 'http2-settings: AAMAAABkAARAAAAAAAIAAAAA']))),
    complete(
      target.map((p) =>
        req(`GET ${p} HTTP/1.1`, [
          H,
          'connection: upgrade, close',
          'upgrade: websocket',
          'sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==',
          'sec-websocket-version: 13',
        ]),
      ),
    ),
    complete(target.map((p) => req(`CONNECT ${p} HTTP/1.1`, [H, C]))),
    complete(fc.constantFrom('127.0.0.1:1', 'evil.example:443', '[::1]:80').map((a) => req(`CONNECT ${a} HTTP/1.1`, [H, C]))),
    complete(fc.constantFrom('http://evil.example/v1/hosts', '*', 'v1/hosts', 'http://127.0.0.1/v1/hosts').map((u) => req(`GET ${u} HTTP/1.1`, [H, C]))),
    complete(fc.constant(req('OPTIONS * HTTP/1.1', [H, C]))),
    complete(fc.tuple(target, fc.integer({ min: 17, max: 40 })).map(([p, k]) => req(`GET ${p} HTTP/1.1`, [H, C, `x-big: ${'b'.repeat(k * 1024)}`]))),
    complete(fc.tuple(target, fc.integer({ min: 1, max: 3 })).map(([p, n]) => req(`GET ${p}?${'q'.repeat(n * 17 * 1024)} HTTP/1.1`, [H, C]))),
    complete(target.map((p) => `${req(`GET ${p} HTTP/1.1`, [H])}${req(`GET ${p} HTTP/1.1`, [H, C])}`)),
    complete(target.map((p) => `${req(`GET ${p} HTTP/1.1`, [H])}\r\n\r\n\r\nGARBAGE`)),
    incomplete(target.map((p) => req(`POST ${p} HTTP/1.1`, [H, J, `content-length: ${json.length + 20}`], json))),
    incomplete(target.map((p) => req(`POST ${p} HTTP/1.1`, [H, J, 'transfer-encoding: chunked'], `ffffffffffffffff\r\n${json}`))),
    incomplete(target.map((p) => `GET ${p} HTTP/1.1\r\n${H}\r\n`)),
    incomplete(fc.constantFrom('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', '\u0016\u0003\u0001\u0000\u00a5\u0001\u0000\u0000\u00a1\u0003\u0003', '', '\r\n')),
    incomplete(fc.uint8Array({ minLength: 1, maxLength: 200 }).map((b) => Buffer.from(b).toString('latin1'))),
    incomplete(fc.string({ maxLength: 200 })),
  )
  return raw.map(({ raw, halfClose }) => ({ op: 'raw', kind: 'raw', method: '', path: '', headers: {}, raw, halfClose }))
}

/** Kinds and their weights in a run. */
export const CASE_WEIGHTS = { valid: 8, boundary: 3, malformed: 8, unrouted: 2, raw: 2 } as const

/** Every case of the document: per operation (each equally likely) valid, boundary and malformed ones; unrouted and raw ones. */
export function restCaseArb(doc: OpenApiDoc): fc.Arbitrary<RestCase> {
  const ops = operationsOf(doc)
  const perKind = (kind: 'valid' | 'boundary' | 'malformed') => fc.oneof(...ops.map((op) => operationCase(doc, op, kind)))
  return fc.oneof(
    { weight: CASE_WEIGHTS.valid, arbitrary: perKind('valid') },
    { weight: CASE_WEIGHTS.boundary, arbitrary: perKind('boundary') },
    { weight: CASE_WEIGHTS.malformed, arbitrary: perKind('malformed') },
    { weight: CASE_WEIGHTS.unrouted, arbitrary: unroutedCase(ops) },
    { weight: CASE_WEIGHTS.raw, arbitrary: rawCase(ops) },
  )
}
