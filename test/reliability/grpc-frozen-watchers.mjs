// A throw-away client process for watchers.test.ts: it opens N gRPC `EventService.Watch` streams from one position,
// each on its own connection, and records what each receives. The test freezes this process (SIGSTOP) once the
// service counts the subscriptions: its sockets are then not read at all, which is what a watcher that stopped
// reading looks like to the service. (A grpc-js client's `call.pause()` is not that: grpc-js keeps reading the
// connection into its own memory, so the service sees a fast reader.) After SIGCONT it reads on; when every
// stream has ended it prints one JSON line, [{ seqs, disorder, error: { code, resumeSeq } }], and exits.
// Run from the build in dist/. Without arguments it does nothing (a runner that executes every file of this folder).
import * as grpc from '@grpc/grpc-js'
import { loadApiProto } from '../../dist/src/transport/grpc/proto.js'

const [address, since, count] = process.argv.slice(2)
if (!address || !since || !count) process.exit(0)
const { v1 } = loadApiProto()
const creds = grpc.credentials.createInsecure()
const watchers = Array.from({ length: Number(count) }, () => {
  const client = new v1.EventService(address, creds, { 'grpc.use_local_subchannel_pool': 1 })
  const w = { seqs: [], disorder: 0, error: undefined, ended: false }
  const call = client.Watch({ since_seq: since })
  call.on('data', (e) => {
    const seq = Number(e.seq)
    if (w.seqs.length && seq <= w.seqs[w.seqs.length - 1]) w.disorder++
    w.seqs.push(seq)
  })
  call.on('error', () => undefined)
  call.on('status', (s) => {
    const resume = s.metadata.get('resume-seq')[0]
    w.error = { code: grpc.status[s.code], ...(resume !== undefined ? { resumeSeq: Number(resume) } : {}) }
    w.ended = true
    client.close()
    if (watchers.every((x) => x.ended)) {
      process.stdout.write(`${JSON.stringify(watchers)}\n`, () => process.exit(0))
    }
  })
  return w
})
process.stdout.write(`opened ${watchers.length}\n`)
