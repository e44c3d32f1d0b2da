/**
 * A client no one on this team wrote (issue 4 §6): Debian's python3-grpcio with message types from
 * the server's reflection, cross-checked against Debian's protoc (python3-grpc-tools) compiling our
 * .proto files. It calls ListHosts, CreateMdev, GetMdev, an admission error (its rich status decoded with
 * protoc-built google.rpc classes), undecodable request bytes, and a Watch stream.
 *
 * Needs `apt-get install python3-grpcio python3-grpc-tools`. Without them the test is SKIPPED loudly,
 * except under CI or APMATRIX_REQUIRE_TOOLS=1, where it FAILS.
 */
import { spawnSync, spawn } from 'node:child_process'
import path from 'node:path'
import { createRequire } from 'node:module'
import t from 'tap'
import { projectRoot } from '../../../src/paths.js'
import { PROTO_ROOT } from '../../../src/transport/grpc/proto.js'
import { requireOrSkip } from '../../helpers/required.js'
import { freshDatabase } from '../../store/pg-helper.js'
import { grpcFixture, ok } from './grpc-fixture.js'

const U = 'abcdefab-1234-4321-8abc-0123456789ab'
const SCRIPT = path.join(projectRoot, 'test/transport/grpc/python/apmatrix_client.py')
const REFLECTION_PROTO = path.join(
  path.dirname(createRequire(import.meta.url).resolve('@grpc/reflection/package.json')),
  'build/proto/grpc/reflection/v1/reflection.proto',
)

/** A python3 that has Debian's grpc and grpc_tools (pyenv shims often do not). */
function findPython(): string | undefined {
  for (const p of [process.env.APMATRIX_PYTHON, '/usr/bin/python3', 'python3'].filter(Boolean) as string[]) {
    const r = spawnSync(p, ['-c', 'import grpc, grpc_tools.protoc, google.protobuf'], { encoding: 'utf8' })
    if (r.status === 0) return p
  }
  return undefined
}

const python = findPython()
const MISSING = 'python3-grpcio / python3-grpc-tools not installed: apt-get install -y python3-grpcio python3-grpc-tools'

requireOrSkip(t, 'python3-grpcio client: reflection, unary calls, errors, Watch', python ? undefined : MISSING, async (t) => {
  const fx = await grpcFixture(t, await freshDatabase(t, 'sqlite'))
  await ok(t, fx.clients.hosts.SetMasks.bind(fx.clients.hosts), { host: 'local', apmask: '-5,-6', aqmask: '-4' })
  const since = fx.hub.lastSeq
  const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    // Async spawn: the server runs in this process and must keep answering.
    const p = spawn(python!, [SCRIPT, fx.target, PROTO_ROOT, REFLECTION_PROTO, U, String(since), '2'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    p.stdout.on('data', (d) => (stdout += d))
    p.stderr.on('data', (d) => (stderr += d))
    const kill = setTimeout(() => p.kill('SIGKILL'), 60_000)
    p.on('close', (code) => {
      clearTimeout(kill)
      resolve({ code, stdout, stderr })
    })
  })
  t.equal(out.code, 0, `python exited 0: ${out.stderr.slice(-2000)}`)
  const r = JSON.parse(out.stdout)
  t.comment(`python grpcio ${r.grpcio}`)
  for (const s of ['apmatrix.v1.HostService', 'apmatrix.v1.MdevService', 'apmatrix.v1.EventService', 'grpc.health.v1.Health'])
    t.ok(r.services.includes(s), `reflection lists ${s}`)
  t.equal(r.descriptors_agree, true, "the server's descriptors match Debian's protoc")
  t.same(r.hosts, ['local'])
  t.same(r.create, { created: true, uuid: U, generation: 1, state: 'started' })
  t.match(r.get, { uuid: U, adapters: [5], domains: [4], control_domains: [4], resource_version: String })
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
  // Request ids are the server's; the caller's own comes back as the correlation id.
  t.match(r.request_ids.CreateMdev, { request_id: UUID, correlation_id: 'py-CreateMdev' })
  t.match(r.error.request_id, UUID)
  t.not(r.error.request_id, r.request_ids.CreateMdev.request_id, 'one id per call')
  t.same(r.error, {
    status: 'FAILED_PRECONDITION',
    code: r.error?.code,
    request_id: r.error?.request_id,
    correlation_id: 'py-CreateMdev',
    violations: ['APQN_IN_USE 05.0004', 'APQN_RESERVED 07.0001'],
    violations_bin: ['APQN_IN_USE 05.0004', 'APQN_RESERVED 07.0001'],
    rich: r.error?.rich,
  })
  t.match(r.error.code, /^APQN_(IN_USE|RESERVED)$/)
  // The standard rich status, decoded by Debian's protobuf with protoc-built google.rpc classes.
  t.match(r.error.rich, {
    code_matches: true,
    message_matches: true,
    reason: r.error.code,
    domain: 'apmatrix.dev',
    metadata: { requestId: r.error.request_id },
    preconditions: ['APQN_IN_USE 05.0004', 'APQN_RESERVED 07.0001'],
  })
  t.equal(r.bad_input, 'INVALID_ARGUMENT')
  t.match(r.bad_input_rich, { code_matches: true, reason: 'INVALID_ARGUMENT', domain: 'apmatrix.dev', field_violations: ['host INVALID_ARGUMENT'] })
  t.same(r.garbage, { status: 'INVALID_ARGUMENT', reason: 'INVALID_ARGUMENT' })
  // Events after `since`: the MdevDefined of the create, in seq order.
  const stored = await fx.store.events.list({ since, host: 'local', limit: 2 })
  t.same(
    r.events.map((e: { seq: number }) => e.seq),
    stored.map((e) => e.seq),
  )
  t.match(r.events, [
    { type: 'MdevDefined', kind: 'mdev', name: U, request_id: r.request_ids.CreateMdev.request_id },
    { type: 'MasksChanged', kind: 'masks', request_id: r.request_ids.SetMasks.request_id },
  ])
  t.equal(r.masks_apmask_has_7, false)
})
