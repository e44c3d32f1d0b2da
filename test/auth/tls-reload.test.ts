/**
 * SIGHUP re-reads the TLS files of a real `apmatrix serve` process (docs/security.md (Configuration)):
 * REST through node's `setSecureContext`, gRPC (server TLS, no client CA) through the grpc-js certificate
 * provider. The new certificate is signed by another CA than the old one, so a client that trusts only
 * the old CA tells the two apart: after the signal a new handshake shows the new certificate (REST and
 * gRPC ports), while connections made before it (an https keep-alive socket, a grpc-js channel that
 * trusts only the old CA) keep working. A file that does not make a certificate is refused on SIGHUP
 * and the certificate in force stays, on both ports.
 */
import { X509Certificate } from 'node:crypto'
import fs from 'node:fs'
import https from 'node:https'
import path from 'node:path'
import type { TLSSocket } from 'node:tls'
import tls from 'node:tls'
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { loadApiProto } from '../../src/transport/grpc/proto.js'
import { requireOrSkip, which } from '../helpers/required-tools.js'
import { readyLine, spawnCli } from '../reliability/cli-process.js'
import { until } from '../scenario/rest-client.js'
import { makeCa, makeLeaf } from './certs.js'

/** The SHA-256 fingerprint of a PEM certificate file, as node prints a peer's. */
const fingerprint = (file: string) => new X509Certificate(fs.readFileSync(file)).fingerprint256

/** One fresh TLS handshake with 127.0.0.1:port trusting `ca`: the server certificate's fingerprint, or the error code. */
function handshake(port: number, ca: Buffer, alpn?: string): Promise<{ fingerprint?: string; error?: string }> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca, ...(alpn ? { ALPNProtocols: [alpn] } : {}) })
    s.once('secureConnect', () => {
      const fp = s.getPeerCertificate().fingerprint256
      s.destroy()
      resolve({ fingerprint: fp })
    })
    s.once('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }))
  })
}

/** GET `url` through `agent`: the status and the socket it went over. */
function get(url: string, agent: https.Agent): Promise<{ status: number; socket: TLSSocket }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { agent }, (res) => {
      // Taken now: a keep-alive socket leaves the response when it goes back to the agent.
      const socket = res.socket as TLSSocket
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode ?? 0, socket }))
    })
    req.on('error', reject)
  })
}

const missing = which('openssl') === undefined ? 'openssl is needed: apt-get install -y openssl' : undefined

requireOrSkip(t, 'SIGHUP swaps the TLS certificate of a running apmatrix serve; connections stay', missing, async (t) => {
  const dir = t.testdir({})
  const oldCa = makeCa(dir, 'old-ca')
  const newCa = makeCa(dir, 'new-ca')
  const oldLeaf = makeLeaf(dir, oldCa, 'server-old', 'server')
  const newLeaf = makeLeaf(dir, newCa, 'server-new', 'server')
  const live = { cert: path.join(dir, 'server.crt'), key: path.join(dir, 'server.key') }
  /** Puts a certificate and key in place the way a rotation does: written aside, then renamed over. */
  const install = (cert: string, key: string) => {
    for (const [from, to] of [
      [cert, live.cert],
      [key, live.key],
    ] as const) {
      fs.copyFileSync(from, `${to}.new`)
      fs.renameSync(`${to}.new`, to)
    }
  }
  install(oldLeaf.cert, oldLeaf.key)
  const oldCaPem = fs.readFileSync(oldCa.cert)
  const newCaPem = fs.readFileSync(newCa.cert)

  const svc = spawnCli(t, ['serve'], {
    DATABASE_URL: `file:${path.join(dir, 'apmatrix.db')}`,
    APMATRIX_HTTP_ADDR: '127.0.0.1:0',
    APMATRIX_GRPC_ADDR: '127.0.0.1:0',
    APMATRIX_TLS_CERT: live.cert,
    APMATRIX_TLS_KEY: live.key,
    APMATRIX_LOG_LEVEL: 'info',
  })
  const rest = await readyLine(svc, /^apmatrix serving REST on (https:\/\/\S+)$/, 'the REST ready line')
  const grpcLine = await readyLine(svc, /^apmatrix serving gRPC on (\S+)$/, 'the gRPC ready line')
  t.ok(rest && grpcLine, 'serving over TLS', { stderr: svc.stderr.slice(-20) })
  if (!rest || !grpcLine) return
  const url = rest[1]!
  const restPort = Number(new URL(url).port)
  const grpcAddr = grpcLine[1]!
  const grpcPort = Number(grpcAddr.slice(grpcAddr.lastIndexOf(':') + 1))

  // Before: the old certificate on both ports; a keep-alive https connection and a gRPC channel, both trusting only the old CA.
  t.same(await handshake(restPort, oldCaPem), { fingerprint: fingerprint(oldLeaf.cert) }, 'REST: the old certificate')
  t.same(await handshake(grpcPort, oldCaPem, 'h2'), { fingerprint: fingerprint(oldLeaf.cert) }, 'gRPC: the old certificate')
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: oldCaPem })
  t.teardown(() => agent.destroy())
  const first = await get(`${url}/healthz`, agent)
  t.equal(first.status, 200)
  const { v1 } = loadApiProto()
  const listHosts = (client: grpc.Client) =>
    new Promise<grpc.status>((resolve) =>
      (client as unknown as { ListHosts: (r: object, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void) => void }).ListHosts(
        {},
        new grpc.Metadata(),
        { deadline: Date.now() + 10_000 },
        (err) => resolve(err ? err.code : grpc.status.OK),
      ),
    )
  const oldChannel = new v1.HostService(grpcAddr, grpc.credentials.createSsl(oldCaPem))
  t.teardown(() => oldChannel.close())
  t.equal(await listHosts(oldChannel), grpc.status.OK, 'gRPC over the old certificate')

  // The rotation: new files in place, then SIGHUP.
  const reloaded = (n: number) =>
    until(
      `reload log line #${n}`,
      async () => svc.stderr.filter((l) => l.includes('security files reloaded') || l.includes('reload failed')).length >= n || undefined,
      {
        describe: () => svc.stderr.slice(-10),
      },
    )
  install(newLeaf.cert, newLeaf.key)
  process.kill(svc.pid, 'SIGHUP')
  await reloaded(1)
  t.ok(
    svc.stderr.some((l) => l.includes('security files reloaded')),
    'the service says it reloaded',
  )

  t.same(await handshake(restPort, newCaPem), { fingerprint: fingerprint(newLeaf.cert) }, 'REST: a new handshake shows the new certificate')
  t.match(await handshake(restPort, oldCaPem), { error: /SELF_SIGNED|UNABLE_TO_VERIFY/ }, 'REST: ... which a client of the old CA no longer trusts')
  t.same(await handshake(grpcPort, newCaPem, 'h2'), { fingerprint: fingerprint(newLeaf.cert) }, 'gRPC: a new handshake shows the new certificate')
  const again = await get(`${url}/healthz`, agent)
  t.equal(again.status, 200, 'the keep-alive connection made before the reload still answers')
  t.equal(again.socket, first.socket, '... over the same socket')
  t.equal(again.socket.getPeerCertificate().fingerprint256, fingerprint(oldLeaf.cert), '... which still carries the old certificate')
  t.equal(await listHosts(oldChannel), grpc.status.OK, 'the gRPC channel made before the reload still answers (it could not make a new handshake)')
  const newChannel = new v1.HostService(grpcAddr, grpc.credentials.createSsl(newCaPem))
  t.teardown(() => newChannel.close())
  t.equal(await listHosts(newChannel), grpc.status.OK, 'a new gRPC client of the new CA')

  // A bad file: the reload is refused, the new certificate stays in force on both ports.
  fs.writeFileSync(live.cert, 'not a certificate\n')
  process.kill(svc.pid, 'SIGHUP')
  await reloaded(2)
  t.ok(
    svc.stderr.some((l) => l.includes('reload failed') && l.includes('do not make a TLS context')),
    'the failed reload is logged with its reason',
  )
  t.same(await handshake(restPort, newCaPem), { fingerprint: fingerprint(newLeaf.cert) }, 'REST: still the certificate in force')
  t.same(await handshake(grpcPort, newCaPem, 'h2'), { fingerprint: fingerprint(newLeaf.cert) }, 'gRPC: still the certificate in force')
  const fresh = new v1.HostService(grpcAddr, grpc.credentials.createSsl(newCaPem))
  t.teardown(() => fresh.close())
  t.equal(await listHosts(fresh), grpc.status.OK, 'gRPC still accepts new connections')

  process.kill(svc.pid, 'SIGTERM')
  t.match(await svc.exited, { code: 0 }, 'a clean stop')
})
