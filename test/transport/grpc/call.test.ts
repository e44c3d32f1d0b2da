/** The unary wrapper (src/transport/grpc/call.ts): answers once, maps errors, skips expired calls. */
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { ApmatrixError } from '../../../src/domain/errors.js'
import { pastDeadline, unary } from '../../../src/transport/grpc/call.js'

function fakeCall(o: { deadline?: grpc.Deadline; cancelled?: boolean; rid?: string }) {
  const metadata = new grpc.Metadata()
  if (o.rid) metadata.set('x-request-id', o.rid)
  return { request: { x: 1 }, metadata, cancelled: o.cancelled ?? false, getPeer: () => 'ipv4:127.0.0.1:1', getDeadline: () => o.deadline ?? Infinity }
}

function run(call: ReturnType<typeof fakeCall>, fn: () => Promise<unknown>): Promise<{ calls: number; answers: Array<[unknown, unknown]> }> {
  let calls = 0
  const answers: Array<[unknown, unknown]> = []
  const h = unary(null, async () => {
    calls++
    return fn()
  }) as unknown as (c: unknown, cb: (e: unknown, r?: unknown) => void) => void
  h(call, (e, r) => answers.push([e, r]))
  return new Promise((resolve) => setTimeout(() => resolve({ calls, answers }), 20))
}

t.test('a call already past its deadline or cancelled does no work', async (t) => {
  t.equal(pastDeadline({ getDeadline: () => new Date(Date.now() - 1) }), true)
  t.equal(pastDeadline({ getDeadline: () => Infinity }), false)
  t.equal(pastDeadline({ getDeadline: () => Date.now() + 10_000 }), false)
  const expired = await run(fakeCall({ deadline: new Date(Date.now() - 5) }), async () => 1)
  t.same(expired, { calls: 0, answers: [] })
  const cancelled = await run(fakeCall({ cancelled: true }), async () => 1)
  t.same(cancelled, { calls: 0, answers: [] })
})

t.test('answers exactly once, with the mapped error and the request id', async (t) => {
  const good = await run(fakeCall({}), async () => ({ ok: true }))
  t.same(good.answers, [[null, { ok: true }]])
  const bad = await run(fakeCall({ rid: 'r-1' }), async () => {
    throw new ApmatrixError('BUSY', 'mask change would take 05.0004 from a device')
  })
  t.equal(bad.answers.length, 1)
  const err = bad.answers[0]![0] as grpc.ServiceError
  t.equal(err.code, grpc.status.FAILED_PRECONDITION)
  t.equal(err.metadata.get('code')[0], 'BUSY')
  t.equal(err.metadata.get('x-request-id')[0], 'r-1')
})
