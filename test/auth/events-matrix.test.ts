/**
 * The authorization matrix of the event streams (issue 9 §5): every subject x both streams (REST
 * server-sent events, gRPC EventService.Watch) replays the whole log, and receives exactly the events
 * the role table lets it read (authorize(subject, read, the event's resource, {host, owner})): a
 * tenant only its own devices' events (also those whose owner is not in the event and is looked up),
 * no masks; anonymous is refused. Each watch reads until a final marker event that every subject may
 * read, so "nothing more" is checked without waiting on time.
 */
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { authorize } from '../../src/auth/authorize.js'
import { eventResource } from '../../src/service/event-watch.js'
import { forEachDatabase } from '../store/pg-helper.js'
import { DEVICES, SUBJECTS, type Subject, securedFixture } from './auth-fixture.js'

const MARKER = 'MatrixMarker'
const DEADLINE_MS = 60_000

/** Reads an SSE answer until the marker event; resolves with the status and the seqs read. */
async function sse(url: string, headers: Record<string, string>): Promise<{ status: number; seqs: number[] }> {
  const ac = new AbortController()
  const guard = setTimeout(() => ac.abort(new Error('no marker event before the deadline')), DEADLINE_MS)
  try {
    const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: ac.signal })
    if (res.status !== 200) return { status: res.status, seqs: [] }
    const seqs: number[] = []
    let buf = ''
    const dec = new TextDecoder()
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += dec.decode(chunk, { stream: true })
      let i: number
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i)
        buf = buf.slice(i + 2)
        const id = /^id: (\d+)$/m.exec(block)?.[1]
        const type = /^event: (\S+)$/m.exec(block)?.[1]
        if (id === undefined) continue
        // Leaving the loop cancels the body (the iterator's return), which ends the request.
        if (type === MARKER) return { status: 200, seqs }
        seqs.push(Number(id))
      }
    }
    return { status: 200, seqs }
  } finally {
    clearTimeout(guard)
  }
}

/** Watches over gRPC until the marker; resolves with the status code (OK when the marker came) and the seqs. */
function watch(client: grpc.Client, md: grpc.Metadata): Promise<{ code: number; seqs: number[] }> {
  return new Promise((resolve) => {
    const seqs: number[] = []
    const call = (client as unknown as { Watch(req: object, md: grpc.Metadata): grpc.ClientReadableStream<{ seq: string; type: string }> }).Watch(
      { since_seq: '0' },
      md,
    )
    const guard = setTimeout(() => call.cancel(), DEADLINE_MS)
    let done = false
    call.on('data', (e) => {
      if (done) return
      if (e.type === MARKER) {
        done = true
        clearTimeout(guard)
        call.cancel()
        resolve({ code: grpc.status.OK, seqs })
      } else seqs.push(Number(e.seq))
    })
    call.on('error', (err: grpc.ServiceError) => {
      if (done) return
      done = true
      clearTimeout(guard)
      resolve({ code: err.code, seqs })
    })
  })
}

forEachDatabase(t, async (t, db) => {
  const fx = await securedFixture(t, db)
  // Events without the owner in their data (as the reconciler writes them): the watch looks the owner up.
  for (const d of Object.values(DEVICES)) await fx.store.events.append({ host: 'local', kind: 'mdev', name: d.uuid, type: 'MdevStarted', message: 'started' })
  await fx.store.events.append({ host: 'local', kind: 'queue', name: '05.0004', type: 'QueueChanged', message: 'q' })
  await fx.store.events.append({ host: 'local', kind: 'host', name: 'local', type: MARKER, message: 'the end of this test' })
  const log = await fx.store.events.list({ since: 0, limit: 1000 })
  const ownerOf = new Map(Object.values(DEVICES).map((d) => [d.uuid, d.owner]))

  let cells = 0
  const mismatches: string[] = []
  for (const s of SUBJECTS) {
    const p = s === 'anonymous' ? undefined : fx.principals.get(s)
    const want = p
      ? log
          .filter((e) => e.type !== MARKER)
          .filter((e) => {
            const resource = eventResource(e.kind)
            const owner = resource === 'mdevs' ? ownerOf.get(e.name) : undefined
            return authorize(p, 'read', resource, { host: e.host, ...(resource === 'mdevs' ? { owner: owner ?? null } : {}) }) === 'allow'
          })
          .map((e) => e.seq)
      : null
    const rest = await sse(`${fx.base}/v1/events?since=0`, fx.headersOf(s as Subject))
    const rpc = await watch(fx.clients.EventService!, fx.metadataOf(s as Subject))
    cells += 2
    if (want === null) {
      if (rest.status !== 401) mismatches.push(`REST ${s}: status ${rest.status}, want 401`)
      if (rpc.code !== grpc.status.UNAUTHENTICATED) mismatches.push(`gRPC ${s}: ${grpc.status[rpc.code]}, want UNAUTHENTICATED`)
      continue
    }
    if (JSON.stringify(rest.seqs) !== JSON.stringify(want)) mismatches.push(`REST ${s}: ${JSON.stringify(rest.seqs)}, want ${JSON.stringify(want)}`)
    if (rpc.code !== grpc.status.OK || JSON.stringify(rpc.seqs) !== JSON.stringify(want))
      mismatches.push(`gRPC ${s}: ${grpc.status[rpc.code]} ${JSON.stringify(rpc.seqs)}, want ${JSON.stringify(want)}`)
    if (s === 'tenant-a') t.ok(want.length > 0 && want.length < log.length - 1, `tenant-a sees ${want.length} of ${log.length - 1} events`)
  }
  t.same(mismatches, [], `event stream matrix: ${cells} cells (${SUBJECTS.length} subjects x 2 transports), 0 mismatches`)
})
