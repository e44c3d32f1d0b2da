/**
 * `apmatrix serve` stops on SIGTERM even when a client never closes its side of a connection (serve.ts
 * exitAfterLingeringConnections): a raw HTTP/2 client on the gRPC port sends its preface and then neither reads
 * nor closes. The gRPC server closes its session gracefully (GOAWAY, then the socket's end) and that socket
 * would hold the process for ever. Found by the gRPC fuzz run (the service was still there 100 s after SIGTERM).
 */
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { readyLine, spawnCli } from '../reliability/cli-process.js'

// The HTTP/2 client connection preface and an empty SETTINGS frame (RFC 9113 §3.4, §6.5).
const PREFACE = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])])

t.test('SIGTERM with a client that neither reads nor closes: the process exits 0', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-stop-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const p = spawnCli(t, ['serve'], {
    DATABASE_URL: `file:${path.join(dir, 'db.sqlite')}`,
    APMATRIX_HTTP_ADDR: '127.0.0.1:0',
    APMATRIX_GRPC_ADDR: '127.0.0.1:0',
    APMATRIX_LOG_LEVEL: 'warn',
  })
  const m = await readyLine(p, /^apmatrix serving gRPC on (\S+):(\d+)$/, 'the gRPC ready line')
  if (!m) throw new Error(`the service did not start: ${p.stderr.join('\n')}`)
  const socket = net.connect({ host: m[1]!, port: Number(m[2]) })
  t.teardown(() => socket.destroy())
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  socket.write(PREFACE)
  // The server's SETTINGS arrive: the session exists. From now on nothing is read and nothing is closed.
  await new Promise<void>((resolve) => socket.once('data', () => resolve()))
  socket.pause()
  p.proc.kill('SIGTERM')
  // tap's timeout is the hang guard: without the lingering-connection exit the process never ends.
  const exit = await p.exited
  t.same(exit, { code: 0, signal: null }, 'a graceful stop, exit 0')
  t.match(p.stderr.join('\n'), /connections still open after the stop/, 'the service says why it did not wait')
})
