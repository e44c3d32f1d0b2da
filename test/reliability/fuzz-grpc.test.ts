/**
 * gRPC fuzz at volume (issue 11 §1): 10,000 calls of every unary method of every service the server
 * loads (test/reliability/proto-cases.ts: messages generated from the descriptors, valid-shaped, boundary,
 * damaged on the wire, random bytes, another method's message, 5 MiB messages; odd metadata; 0-1 ms
 * deadlines), sent as bytes by a raw grpc-js client (makeUnaryRequest with identity serialisers) to one
 * real service over a real socket (test/reliability/fuzz-service.ts: `apmatrix serve` as a child process),
 * time-boxed. Every call (test/reliability/grpc-calls.ts): never INTERNAL, UNKNOWN or DATA_LOSS; an error that
 * names its code (trailer `code`) has the gRPC status docs/api.md's error table gives that code; statuses
 * without a code only where grpc-js gives them (DEADLINE_EXCEEDED or CANCELLED under a short deadline,
 * UNIMPLEMENTED for a path that is no method, RESOURCE_EXHAUSTED for a message over the size limit,
 * NOT_FOUND from the health service); an OK answer decodes as the method's response type; the details
 * stay short; no call hangs. A failure is shrunk to a minimal call and printed with the seed. At the end
 * the same checks as the REST run (fuzz-service.ts endOfRunChecks). Needs the build in dist/.
 */
import * as grpc from '@grpc/grpc-js'
import fc from 'fast-check'
import t from 'tap'
import { API_SERVICES } from '../../src/transport/grpc/proto.js'
import { documentedGrpcStatuses } from './error-contract.js'
import { outcomeProblem, send } from './grpc-calls.js'
import { endOfRunChecks, failureReport, startFuzzService, Tally, waitReady } from './fuzz-service.js'
import { encode, grpcCaseArb, messageArb, unaryMethods } from './proto-cases.js'

/** Cases of the run (issue 11 §1: at least 10,000). */
const CASES = 10_000
/** The time box of the run, shrinking included (the whole file stays under ~3 minutes on 2 cores). */
const TIME_BOX_MS = 165_000
t.test(`gRPC: ${CASES} generated calls, never INTERNAL/UNKNOWN, documented statuses, healthy after, memory back`, { timeout: 280_000 }, async (t) => {
  const svc = await startFuzzService(t)
  await waitReady(svc.httpUrl)
  const { methods, streaming } = unaryMethods()
  const byPath = new Map(methods.map((m) => [m.path, m]))
  t.ok(methods.length >= 27, `${methods.length} unary methods (${streaming.length} streaming ones left out: ${streaming.join(', ')})`)
  const documented = documentedGrpcStatuses()
  // Large enough for the oversized requests to reach the server (which refuses them at its own limit).
  const client = new grpc.Client(svc.grpcAddr, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': 8 * 1024 * 1024 })
  t.teardown(() => client.close())

  // Warm-up: every method a few times, valid-shaped, before the baseline.
  for (const m of methods) {
    for (const msg of fc.sample(messageArb(m.requestType, 'valid'), { numRuns: 3, seed: 1 })) {
      await send(client, { method: m.path, path: m.path, kind: 'valid', bytes: encode(m.requestType, msg), metadata: [] })
    }
  }
  const before = await svc.memory()

  const statuses = new Tally()
  const kinds = new Tally()
  const perMethod = new Tally()
  let sent = 0
  let deadlines = 0
  const started = Date.now()
  const result = await fc.check(
    fc.asyncProperty(grpcCaseArb(methods), async (c) => {
      sent++
      const o = await send(client, c)
      const problem = outcomeProblem(c, o, byPath, documented)
      if (problem) throw new Error(`${c.kind} ${c.path}: ${problem}`)
      statuses.add(grpc.status[o.code] ?? String(o.code))
      kinds.add(c.kind)
      perMethod.add(c.method)
      if (c.deadlineMs !== undefined) deadlines++
    }),
    { numRuns: CASES, interruptAfterTimeLimit: TIME_BOX_MS, markInterruptAsFailure: true },
  )
  const seconds = (Date.now() - started) / 1000
  t.comment(
    `gRPC fuzz: ${result.numRuns} cases in ${seconds.toFixed(0)} s (${(result.numRuns / seconds).toFixed(0)}/s), seed ${result.seed}; ${sent} calls sent (shrinking included), ${deadlines} with a 0-1 ms deadline`,
  )
  t.comment(`statuses: ${statuses}`)
  t.comment(`cases by kind: ${kinds}`)
  t.comment(`cases by method: ${perMethod}`)
  if (result.failed) t.fail(result.interrupted ? `interrupted by the time box after ${result.numRuns} runs` : failureReport(result))
  t.equal(result.numRuns, CASES, `${CASES} cases ran inside the time box`)
  t.ok(sent >= CASES, `${sent} calls sent`)
  for (const m of methods) t.ok(perMethod.get(m.path) > 0, `${m.path}: ${perMethod.get(m.path)} cases`)
  t.ok(statuses.get('OK') > 0 && statuses.get('INVALID_ARGUMENT') > 0 && statuses.get('DEADLINE_EXCEEDED') > 0, 'answers, refusals and expired deadlines all')

  // Its channel closed first: the memory figures are of a service without clients.
  client.close()
  await endOfRunChecks(t, svc, API_SERVICES, before)
})
