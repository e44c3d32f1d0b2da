import t from 'tap'
import { WorkQueue } from '../../src/reconciler/work-queue.js'

t.test('a queued key is not queued twice', async (t) => {
  const q = new WorkQueue()
  q.add('a')
  q.add('a')
  q.add('b')
  t.equal(q.length, 2)
  t.equal(await q.get(), 'a')
  t.equal(await q.get(), 'b')
  q.shutdown()
})

t.test('a key in flight is never handed out twice; an add while in flight runs it once more after done', async (t) => {
  const q = new WorkQueue()
  q.add('h')
  const k = await q.get()
  t.equal(k, 'h')
  q.add('h')
  q.add('h')
  t.equal(q.length, 0, 'not queued while in flight')
  let second: string | null | undefined
  const p = q.get().then((v) => (second = v))
  await new Promise((r) => setImmediate(r))
  t.equal(second, undefined, 'a second worker waits')
  q.done('h')
  await p
  t.equal(second, 'h', 'the dirty key runs once more')
  q.done('h')
  t.equal(q.length, 0)
  q.shutdown()
})

t.test('failures back off exponentially up to the cap; forget resets', async (t) => {
  const q = new WorkQueue({ baseDelayMs: 10, maxDelayMs: 35 })
  t.equal(q.addRateLimited('x'), 10)
  q.shutdown() // clears the timer; the delays below are computed, not waited for
  const q2 = new WorkQueue({ baseDelayMs: 10, maxDelayMs: 35 })
  const delays = [q2.addRateLimited('x'), q2.addRateLimited('x'), q2.addRateLimited('x'), q2.addRateLimited('x')]
  t.same(delays, [10, 20, 35, 35])
  t.equal(q2.retries('x'), 4)
  q2.forget('x')
  t.equal(q2.retries('x'), 0)
  q2.shutdown()
})

t.test('a rate-limited key comes back after its delay', async (t) => {
  const q = new WorkQueue({ baseDelayMs: 5, maxDelayMs: 5 })
  q.addRateLimited('k')
  t.equal(q.length, 0)
  t.equal(await q.get(), 'k')
  q.shutdown()
})

t.test('a key waiting to be queued keeps the earlier of two times (client-go delaying queue)', async (t) => {
  const q = new WorkQueue()
  t.teardown(() => q.shutdown())
  const order: string[] = []
  // 'slow' first waits an hour (a long backoff), then is asked for in 20 ms: it comes after 20 ms, not an hour.
  q.addAfter('slow', 3_600_000)
  q.addAfter('slow', 20)
  // 'late' is asked for in 10 ms, then in an hour: the earlier time stays.
  q.addAfter('late', 10)
  q.addAfter('late', 3_600_000)
  for (let i = 0; i < 2; i++) {
    const k = await q.get()
    order.push(k!)
    q.done(k!)
  }
  t.same(order, ['late', 'slow'], 'both came, each at its earlier time, in that order')
})

t.test('first: ahead of the keys waiting; a waiting key moves there; a delayed key keeps it', async (t) => {
  const q = new WorkQueue()
  t.teardown(() => q.shutdown())
  for (const k of ['a', 'b', 'c']) q.add(k)
  q.add('moved', { first: true })
  q.add('c', { first: true })
  q.add('a')
  t.equal(q.length, 4, 'no key twice')
  const drain = async () => {
    const out: string[] = []
    while (q.length) {
      const k = (await q.get())!
      out.push(k)
      q.done(k)
    }
    return out
  }
  t.same(await drain(), ['c', 'moved', 'a', 'b'], 'the last key asked for first runs first; a plain add leaves the order')
  // A delayed first key: asked for with `first` in 10 ms, then again without in an hour; routine keys queued meanwhile.
  q.addAfter('claimed', 10, { first: true })
  q.addAfter('claimed', 3_600_000)
  for (const k of ['r1', 'r2']) q.add(k)
  const k = await new Promise<string>((resolve) => {
    const tick = () => (q.length === 3 ? resolve(q.get() as Promise<string>) : setTimeout(tick, 5))
    tick()
  })
  t.equal(k, 'claimed', 'when its time comes it goes ahead of the routine keys')
  q.done(k)
  t.same(await drain(), ['r1', 'r2'])
})

t.test('shutdown releases waiting workers with null', async (t) => {
  const q = new WorkQueue()
  const p = q.get()
  q.shutdown()
  t.equal(await p, null)
  t.equal(await q.get(), null)
})

t.test('bad options are refused at construction', async (t) => {
  t.throws(() => new WorkQueue({ baseDelayMs: 0 }), RangeError)
  t.throws(() => new WorkQueue({ baseDelayMs: 100, maxDelayMs: 10 }), RangeError)
})
