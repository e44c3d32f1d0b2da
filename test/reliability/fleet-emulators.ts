/**
 * The fleet test's hosts (test/reliability/fleet.test.ts): N emulated hosts, each its own gRPC server on a free
 * loopback port, as `apmatrix emulator serve` would serve it (src/emulator-remote/server.ts: host-bus with
 * fencing and the write log, emulator controls), all in this one process: N processes of their own would not fit a
 * 2-core machine. Each host is independent (its own kernel state, event stream and fence tokens).
 *
 * Usage: node --import tsx test/reliability/fleet-emulators.ts COUNT PROFILE
 * Prints one line `fleet emulators listening: ["127.0.0.1:p1", ...]` once every server listens; stops them all on
 * SIGTERM or SIGINT, or when stdin closes (the test process died).
 */
import { startEmulatorServer, type EmulatorServer } from '../../src/emulator-remote/server.js'

const count = Number(process.argv[2])
const profile = process.argv[3] ?? 'spec-fixture'
if (!(Number.isInteger(count) && count > 0 && count <= 1000)) {
  process.stderr.write('usage: fleet-emulators.ts COUNT (1..1000) [PROFILE]\n')
  process.exit(2)
}

const servers: EmulatorServer[] = []
let stopping = false
async function stop(): Promise<void> {
  if (stopping) return
  stopping = true
  await Promise.allSettled(servers.map((s) => s.close()))
  process.exit(0)
}
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => void stop())
process.stdin.on('end', () => void stop())
process.stdin.resume()

// A few at a time: the ports are bound one by one anyway, and this keeps start-up memory flat.
for (let i = 0; i < count; i += 20) {
  const batch = await Promise.all(
    Array.from({ length: Math.min(20, count - i) }, () =>
      startEmulatorServer({ addr: '127.0.0.1:0', profile, clock: 'realtime', log: (l) => process.stderr.write(`${l}\n`) }),
    ),
  )
  servers.push(...batch)
}
process.stdout.write(`fleet emulators listening: ${JSON.stringify(servers.map((s) => s.address))}\n`)
