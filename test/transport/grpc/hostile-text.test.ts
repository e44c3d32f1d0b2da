/**
 * Issue 7 §0: error messages echo caller input. Cut in the middle of a surrogate pair, such a message
 * made grpc-js throw `URIError: URI malformed` while encoding the status, outside any handler, and the
 * whole `apmatrix serve` process (REST, gRPC, every stream) died. These inputs go over a real socket
 * to a real `apmatrix serve` child; after each the process must still be alive and answer.
 */
import t from 'tap'
import * as grpc from '@grpc/grpc-js'
import { wellFormed } from '../../../src/domain/text.js'
import { loadApiProto } from '../../../src/transport/grpc/proto.js'
import { freshDatabase } from '../../store/pg-helper.js'
import { readyLine, spawnCli } from '../../reliability/cli-process.js'
import { unary, type UnaryMethod } from './grpc-fixture.js'

const BOOM = '\u{1F4A5}'
/** Control characters and emoji, short enough (31 UTF-16 units) to pass the 32-character bound and reach the format check. */
const BAD_FORMAT = `\u0001\u0002\u001b${BOOM.repeat(14)}`

t.test('hostile text in gRPC requests cannot end the process', async (t) => {
  const db = await freshDatabase(t, 'sqlite')
  const p = spawnCli(t, ['serve'], { DATABASE_URL: db.url, APMATRIX_HTTP_ADDR: '127.0.0.1:0', APMATRIX_GRPC_ADDR: '127.0.0.1:0', APMATRIX_LOG_LEVEL: 'warn' })
  const rest = await readyLine(p, /^apmatrix serving REST on (\S+)$/, 'REST ready line')
  const grpcLine = await readyLine(p, /^apmatrix serving gRPC on (\S+)$/, 'gRPC ready line')
  if (!rest || !grpcLine) throw new Error(`serve did not start: ${p.stderr.join('\n')}`)
  const { v1 } = loadApiProto()
  const creds = grpc.credentials.createInsecure()
  const hosts = new v1.HostService(grpcLine[1]!, creds)
  const mdevs = new v1.MdevService(grpcLine[1]!, creds)
  t.teardown(() => (hosts.close(), mdevs.close()))

  const alive = async (after: string) => {
    t.notOk(p.dead, `the process is alive after ${after}`)
    const h = await fetch(`${rest[1]}/healthz`)
    t.equal(h.status, 200, `REST answers after ${after}`)
    const l = await unary(hosts.ListHosts.bind(hosts) as UnaryMethod<object, { hosts: Array<{ name: string }> }>, {})
    t.equal(l.err, undefined, `gRPC answers after ${after}`)
    t.same(
      l.res?.hosts.map((x) => x.name),
      ['local'],
    )
  }

  const cases: Array<[string, () => ReturnType<typeof unary>]> = [
    [
      'SetMasks dry_run with an emoji mask',
      () => unary(hosts.SetMasks.bind(hosts) as UnaryMethod<object, unknown>, { host: 'local', apmask: `x${BOOM.repeat(40)}`, dry_run: true }),
    ],
    ['SetMasks with an emoji mask', () => unary(hosts.SetMasks.bind(hosts) as UnaryMethod<object, unknown>, { host: 'local', aqmask: `x${BOOM.repeat(40)}` })],
    [
      'ExportMdev with a control-character format',
      () =>
        unary(mdevs.ExportMdev.bind(mdevs) as UnaryMethod<object, unknown>, {
          host: 'local',
          uuid: '11111111-1111-4111-8111-111111111111',
          format: BAD_FORMAT,
        }),
    ],
    [
      'ImportMdevs with a control-character format',
      () => unary(mdevs.ImportMdevs.bind(mdevs) as UnaryMethod<object, unknown>, { host: 'local', format: BAD_FORMAT, document: '{}' }),
    ],
    ['GetMdev with an emoji host', () => unary(mdevs.GetMdev.bind(mdevs) as UnaryMethod<object, unknown>, { host: BOOM.repeat(40), uuid: 'x' })],
  ]
  for (const [what, call] of cases) {
    const o = await call()
    t.ok(o.err, `${what}: refused`)
    t.ok(
      o.err && [grpc.status.INVALID_ARGUMENT, grpc.status.NOT_FOUND].includes(o.err.code),
      `${what}: ${o.err ? grpc.status[o.err.code] : 'ok'} ${o.err?.details}`,
    )
    t.ok(o.err && wellFormed(o.err.details) === o.err.details, `${what}: the status message is well-formed text`)
    await alive(what)
  }
  t.notOk(
    p.stderr.some((l) => /URIError|stray error/.test(l)),
    'nothing escaped a handler',
  )
})
