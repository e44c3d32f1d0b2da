import t from 'tap'
import type { EmulatorEvent } from '../../src/emulator/api.js'
import { type RemoteEmulator, connectEmulator } from '../../src/emulator-remote/client.js'
import { BUS, M1, TYPE_DIR, startRemote, tcpProxy, waitFor } from './helpers.js'

/** Every kept event of the host, read by a fresh subscription from seq 0 (the reference list). */
async function allEvents(client: RemoteEmulator, count: number): Promise<EmulatorEvent[]> {
  const got: EmulatorEvent[] = []
  const sub = client.events(0, (e) => void got.push(e))
  await waitFor(`${count} events`, () => got.length >= count)
  sub.close()
  return got
}

const seqs = (es: EmulatorEvent[]) => es.map((e) => e.seq)
const oneTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1)

t.test('B-44/E-4 Events: kept events first, then live ones as the kernel emits them', async (t) => {
  const { client } = await startRemote(t)
  const got: EmulatorEvent[] = []
  const boots: string[] = []
  const sub = client.events(0, (e, m) => {
    got.push(e)
    boots.push(m.bootId)
  })
  t.teardown(() => sub.close())
  await waitFor('INITSCAN done', () => got.some((e) => e.kind === 'uevent' && e.env.INITSCAN === 'done'))
  const bootCount = got.length
  await client.write(`${BUS}/apmask`, '-5\n')
  await waitFor('bind of 05.0004 to vfio_ap', () => got.some((e) => e.kind === 'uevent' && e.action === 'bind' && e.env.DRIVER === 'vfio_ap'))
  await client.write(`${TYPE_DIR}/create`, `${M1}\n`)
  await waitFor('mdev add', () => got.some((e) => e.kind === 'uevent' && e.action === 'add' && e.devpath.includes(M1)))
  t.ok(got.length > bootCount, 'live events arrived after the kept ones')
  t.same(seqs(got), oneTo(got.length), 'seq 1..n in order, no gap, no duplicate')
  t.same(new Set(boots), new Set([(await client.info()).bootId]))
  const binds = got.filter((e) => e.kind === 'uevent' && e.action === 'bind' && e.devpath.endsWith('05.0004'))
  t.match(binds, [{ env: { DRIVER: 'cex4queue' } }, { env: { DRIVER: 'vfio_ap' } }], 'B-21: typed uevent fields survive the wire')
  t.same(got, await allEvents(client, got.length), 'live delivery equals the kept log')
})

t.test('disconnect, then resume from since_seq: no gap, no duplicate', async (t) => {
  const { client } = await startRemote(t)
  const first: EmulatorEvent[] = []
  const sub1 = client.events(0, (e) => void first.push(e))
  await waitFor('boot events', () => first.some((e) => e.kind === 'uevent' && e.env.INITSCAN === 'done'))
  await client.write(`${BUS}/apmask`, '-5\n')
  await waitFor('bind 05.0004 to vfio_ap', () => first.some((e) => e.kind === 'uevent' && e.action === 'bind' && e.env.DRIVER === 'vfio_ap'))
  sub1.close()
  const resumeAt = sub1.lastSeq
  t.equal(resumeAt, first.at(-1)!.seq)

  // Events emitted while nobody listens.
  await client.write(`${BUS}/apmask`, '-6\n')
  await client.write(`${TYPE_DIR}/create`, `${M1}\n`)

  const second: EmulatorEvent[] = []
  const sub2 = client.events(resumeAt, (e) => void second.push(e), { bootId: sub1.bootId })
  t.teardown(() => sub2.close())
  await waitFor('mdev add', () => second.some((e) => e.kind === 'uevent' && e.action === 'add' && e.devpath.includes(M1)))
  await client.write(`${BUS}/aqmask`, '-4\n')
  await waitFor('aqmask events', () => second.some((e) => e.kind === 'uevent' && e.env.AQMASK !== undefined))
  t.equal(second[0]!.seq, resumeAt + 1, 'the stream restarts right after the last seen seq')
  const joined = [...first, ...second]
  t.same(seqs(joined), oneTo(joined.length))
  t.same(joined, await allEvents(client, joined.length))
})

t.test('automatic resume after the connection breaks (events emitted during the outage are replayed)', async (t) => {
  const { server, client: direct } = await startRemote(t)
  const proxy = await tcpProxy(t, server.address)
  const client = connectEmulator(proxy.address, { timeoutMs: 2000, reconnectMinMs: 20, reconnectMaxMs: 100 })
  t.teardown(() => client.close())
  const got: EmulatorEvent[] = []
  const errors: Error[] = []
  const sub = client.events(0, (e) => void got.push(e), { onError: (e) => void errors.push(e) })
  await waitFor('boot events', () => got.some((e) => e.kind === 'uevent' && e.env.INITSCAN === 'done'))
  const before = got.length

  proxy.cut()
  await waitFor('the stream to notice the break', () => errors.length > 0)
  t.match(errors[0], { code: 'UNAVAILABLE' })
  await direct.write(`${BUS}/apmask`, '-5\n')
  await direct.write(`${TYPE_DIR}/create`, `${M1}\n`)
  t.equal(got.length, before, 'nothing arrives while the link is down')
  proxy.restore()

  await waitFor('replayed mdev add', () => got.some((e) => e.kind === 'uevent' && e.action === 'add' && e.devpath.includes(M1)))
  await direct.write(`${BUS}/apmask`, '-6\n')
  await waitFor('live unbind 06.0004', () => got.some((e) => e.kind === 'uevent' && e.action === 'unbind' && e.devpath.endsWith('06.0004')))
  t.same(seqs(got), oneTo(got.length), 'no gap, no duplicate across the reconnect')
  t.same(got, await allEvents(direct, got.length))
  t.equal(sub.lastSeq, got.at(-1)!.seq)
  sub.close()
})

t.test('Reboot during a stream: the stream goes on with the new boot from seq 1', async (t) => {
  const { client } = await startRemote(t)
  const got: { e: EmulatorEvent; boot: string }[] = []
  const sub = client.events(0, (e, m) => void got.push({ e, boot: m.bootId }))
  t.teardown(() => sub.close())
  await waitFor('boot events', () => got.some(({ e }) => e.kind === 'uevent' && e.env.INITSCAN === 'done'))
  const oldBoot = got[0]!.boot
  const info = await client.reboot()
  await waitFor('new boot events', () => got.some(({ e, boot }) => boot === info.bootId && e.kind === 'uevent' && e.env.INITSCAN === 'done'))
  t.not(info.bootId, oldBoot)
  // The old boot's last events (BINDINGS=complete follows INITSCAN=done, B-35) may still be on the wire
  // when the reboot is asked for, so the split is by boot id, not by how many had arrived by then.
  const n = got.findIndex(({ boot }) => boot === info.bootId)
  const before = got.slice(0, n)
  const after = got.slice(n)
  t.ok(
    before.every(({ boot }) => boot === oldBoot),
    'the old boot, then the new one',
  )
  t.same(seqs(before.map((x) => x.e)), oneTo(before.length), 'the old boot without a gap')
  t.ok(
    after.every(({ boot }) => boot === info.bootId),
    'nothing of the old boot after the new one began',
  )
  t.same(seqs(after.map((x) => x.e)), oneTo(after.length), 'the new boot numbers from 1 again')
  t.equal(sub.bootId, info.bootId)

  // Resuming with the old boot id replays the new boot from its start instead of skipping it.
  const replay: EmulatorEvent[] = []
  const sub2 = client.events(n, (e) => void replay.push(e), { bootId: oldBoot })
  t.teardown(() => sub2.close())
  await waitFor('replay', () => replay.length >= after.length)
  t.same(
    replay.slice(0, after.length),
    after.map((x) => x.e),
  )
})

t.test('resuming behind the 10,000 kept events reports the gap instead of hiding it', async (t) => {
  const { client } = await startRemote(t, { traceRequests: true })
  const first: EmulatorEvent[] = []
  const sub1 = client.events(0, (e) => void first.push(e))
  await waitFor('boot events', () => first.some((e) => e.kind === 'uevent' && e.env.INITSCAN === 'done'))
  sub1.close()
  const resumeAt = sub1.lastSeq
  // 12,000 traced requests complete: one `request` event each, more than the host keeps.
  t.equal(await client.submitRequests('05.0004', 12_000), 12_000)
  await client.advance(3_600_000)
  t.match(await client.requestStats('05.0004'), { completed: 12_000 })

  const gaps: [number, number][] = []
  const second: EmulatorEvent[] = []
  const sub2 = client.events(resumeAt, (e) => void second.push(e), { bootId: sub1.bootId, onGap: (a, b) => void gaps.push([a, b]) })
  t.teardown(() => sub2.close())
  await waitFor('the kept events', () => second.length >= 10_000, 60_000)
  t.equal(second.length, 10_000, 'exactly the kept events')
  t.same(gaps, [[resumeAt + 1, second[0]!.seq - 1]], 'one gap, exactly the dropped seqs')
  t.ok(
    second.every((e, i) => i === 0 || e.seq === second[i - 1]!.seq + 1),
    'contiguous after the gap',
  )
})
