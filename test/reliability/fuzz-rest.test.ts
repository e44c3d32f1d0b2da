/**
 * REST fuzz at volume (issue 11 §1): 10,000 requests generated from the service's own `/openapi.json`
 * (test/reliability/openapi-cases.ts: every operation, valid-shaped, boundary and malformed; unrouted paths;
 * raw bytes that are not HTTP/1.1) against one real service over real sockets (test/reliability/fuzz-service.ts:
 * `apmatrix serve` as a child process, SQLite, emulated hosts `local` (demo) and `sf` (spec-fixture)),
 * time-boxed. Every answer: no 5xx but 503 UNAVAILABLE with Retry-After; every 4xx the problem+json body
 * with a code docs/api.md's error table gives its status; every request that holds a byte answered. A
 * failure is shrunk by fast-check to a minimal request and printed with the seed. At the end the service
 * still runs, logged no error, is healthy (/healthz, /readyz, gRPC health), its heap after forced GCs is
 * near where it was after a warm-up, and SIGTERM stops it cleanly. Prints cases tried, answers by status,
 * kind and operation, and the memory figures. Needs the build in dist/ (npm run build).
 */
import fc from 'fast-check'
import t from 'tap'
import { API_SERVICES } from '../../src/transport/grpc/proto.js'
import { documentedCodes, restAnswerProblem } from './error-contract.js'
import { endOfRunChecks, failureReport, startFuzzService, Tally, waitReady } from './fuzz-service.js'
import { HttpSender } from './http-sender.js'
import { operationCase, operationsOf, restCaseArb, type OpenApiDoc, type RestCase } from './openapi-cases.js'

/** Cases of the run (issue 11 §1: at least 10,000). */
const CASES = 10_000
/** The time box of the run, shrinking included (the whole file stays under ~3 minutes on 2 cores). */
const TIME_BOX_MS = 165_000

/** What is wrong with the answers to one case, or undefined. */
function caseProblem(
  c: RestCase,
  answers: Array<{ status: number; headers: Record<string, string>; body: string }>,
  codes: Map<number, Set<string>>,
): string | undefined {
  const blank = c.raw !== undefined && c.raw.trim() === ''
  if (answers.length === 0 && !blank) return 'no answer'
  for (const a of answers) {
    const p = restAnswerProblem(a, codes, c.method === 'HEAD')
    if (p) return `${p} (answer: ${a.body.slice(0, 300)})`
  }
  return undefined
}

t.test(`REST: ${CASES} generated requests, no 5xx, problem bodies, healthy after, memory back`, { timeout: 280_000 }, async (t) => {
  const svc = await startFuzzService(t)
  await waitReady(svc.httpUrl)
  const doc = (await (await fetch(`${svc.httpUrl}/openapi.json`)).json()) as OpenApiDoc
  const ops = operationsOf(doc)
  t.ok(ops.length >= 25, `${ops.length} operations in /openapi.json`)
  const codes = documentedCodes()
  const sender = new HttpSender(svc.httpUrl)
  t.teardown(() => sender.close())

  // Warm-up: every operation once, valid-shaped, so that routes, serialisers and caches exist before the baseline.
  for (const op of ops) {
    for (const c of fc.sample(operationCase(doc, op, 'valid'), { numRuns: 3, seed: 1 })) await sender.send(c)
  }
  const before = await svc.memory()

  const statuses = new Tally()
  const kinds = new Tally()
  const perOp = new Tally()
  let sent = 0
  const started = Date.now()
  const result = await fc.check(
    fc.asyncProperty(restCaseArb(doc), async (c) => {
      sent++
      const out = await sender.send(c)
      const problem = caseProblem(c, out.answers, codes)
      if (problem) throw new Error(`${c.kind} ${c.op}: ${problem}${out.failure ? ` (${out.failure})` : ''}`)
      kinds.add(c.kind)
      perOp.add(c.op)
      for (const a of out.answers) statuses.add(String(a.status))
      if (out.answers.length === 0) statuses.add('none (blank request)')
    }),
    { numRuns: CASES, interruptAfterTimeLimit: TIME_BOX_MS, markInterruptAsFailure: true },
  )
  const seconds = (Date.now() - started) / 1000
  t.comment(
    `REST fuzz: ${result.numRuns} cases in ${seconds.toFixed(0)} s (${(result.numRuns / seconds).toFixed(0)}/s), seed ${result.seed}; ${sent} requests sent (shrinking included)`,
  )
  t.comment(`answers by status: ${statuses}`)
  t.comment(`cases by kind: ${kinds}`)
  t.comment(`cases by operation: ${perOp}`)
  if (result.failed) t.fail(result.interrupted ? `interrupted by the time box after ${result.numRuns} runs` : failureReport(result))
  t.equal(result.numRuns, CASES, `${CASES} cases ran inside the time box`)
  t.ok(sent >= CASES, `${sent} requests sent`)
  for (const op of ops) t.ok(perOp.get(op.key) > 0, `${op.key}: ${perOp.get(op.key)} cases`)
  t.ok(statuses.get('200') > 0 && statuses.get('400') > 0 && statuses.get('404') > 0, 'successes and refusals both')

  // Its keep-alive connection closed first: the memory figures are of a service without clients.
  await sender.close()
  await endOfRunChecks(t, svc, API_SERVICES, before)
})
