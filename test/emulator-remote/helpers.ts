/**
 * Shared fixtures of the remote emulator tests: a server on a free port of 127.0.0.1 with its client,
 * a TCP proxy whose connections can be cut (a real network failure between client and server),
 * polling, and the outcome of one call as plain data (value or error class, errno/code and message).
 */
import net from 'node:net'
import { ApmatrixError, SysfsError } from '../../src/domain/errors.js'
import { type RemoteEmulator, type RemoteEmulatorOptions, connectEmulator } from '../../src/emulator-remote/client.js'
import { type EmulatorServer, type EmulatorServerOptions, startEmulatorServer } from '../../src/emulator-remote/server.js'

export const BUS = '/sys/bus/ap'
export const TYPE_DIR = '/sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough'
export const M1 = '11111111-2222-4333-8444-555555555555'

interface Teardown {
  teardown(fn: () => unknown): void
}

/** A spec-fixture host on 127.0.0.1:0 with a manual clock (deterministic), and a client; both closed at teardown. */
export async function startRemote(
  t: Teardown,
  opts: Partial<EmulatorServerOptions> = {},
  clientOpts: RemoteEmulatorOptions = {},
): Promise<{ server: EmulatorServer; client: RemoteEmulator }> {
  const server = await startEmulatorServer({ addr: '127.0.0.1:0', profile: 'spec-fixture', clock: 'manual', ...opts })
  const client = connectEmulator(server.address, { timeoutMs: 3000, ...clientOpts })
  t.teardown(async () => {
    client.close()
    await server.close()
  })
  return { server, client }
}

/** The result of an operation as data, so a local and a remote run can be compared with t.same. */
export type Outcome = { ok: true; value: unknown } | { ok: false; error: string; errno?: string; code?: string; message: string }

export async function outcome(fn: () => unknown): Promise<Outcome> {
  try {
    const v = await fn()
    return { ok: true, value: v === undefined ? null : v }
  } catch (e) {
    if (e instanceof SysfsError) return { ok: false, error: 'SysfsError', errno: e.errno, message: e.message }
    if (e instanceof ApmatrixError) return { ok: false, error: e.name, code: e.code, ...(e.errno ? { errno: e.errno } : {}), message: e.message }
    throw e
  }
}

/** Polls `pred` every 10 ms; rejects after `timeoutMs`. */
export async function waitFor(what: string, pred: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** A free TCP port on 127.0.0.1 (bound, then released). */
export async function freePort(): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const port = (srv.address() as net.AddressInfo).port
  await new Promise<void>((r) => srv.close(() => r()))
  return port
}

/** A TCP proxy to `target`. `cut()` drops every connection and refuses new ones until `restore()`. */
export async function tcpProxy(t: Teardown, target: string): Promise<{ address: string; cut(): void; restore(): void }> {
  const i = target.lastIndexOf(':')
  const host = target.slice(0, i)
  const port = Number(target.slice(i + 1))
  const sockets = new Set<net.Socket>()
  let down = false
  const srv = net.createServer((down1) => {
    if (down) {
      down1.destroy()
      return
    }
    const up = net.connect(port, host)
    for (const s of [down1, up]) {
      sockets.add(s)
      s.on('error', () => undefined)
      s.on('close', () => {
        sockets.delete(s)
        down1.destroy()
        up.destroy()
      })
    }
    down1.pipe(up)
    up.pipe(down1)
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    srv.close()
  })
  return {
    address: `127.0.0.1:${(srv.address() as net.AddressInfo).port}`,
    cut() {
      down = true
      for (const s of sockets) s.destroy()
    },
    restore() {
      down = false
    },
  }
}
