import { type ChildProcess, spawn } from 'node:child_process'
import net from 'node:net'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import t from 'tap'
import { emulatorServe } from '../../src/cli/commands/emulator-serve.js'
import type { CliIo } from '../../src/cli/command.js'
import type { EmulatorEvent } from '../../src/emulator/api.js'
import { connectEmulator } from '../../src/emulator-remote/client.js'
import { EMULATOR_PROTO_FILE } from '../../src/emulator-remote/proto.js'
import { HOSTBUS_PROTO_FILE } from '../../src/hostbus/proto.js'
import { projectRoot } from '../../src/paths.js'
import { TS_IMPORT } from '../helpers/ts-loader.js'
import { BUS, M1, waitFor } from './helpers.js'

// The sources, not the compiled copy under dist/ the suite runs from: the child runs TypeScript through tsx.
const here = path.join(projectRoot, 'test/emulator-remote')
const READY = /^apmatrix emulator listening on (\S+) \(profile (\S+), kernel (\S+), bootId ([0-9a-f-]{36})\)$/

/** Collects a child's output line by line. */
function lines(stream: NodeJS.ReadableStream): string[] {
  const out: string[] = []
  let buf = ''
  stream.setEncoding('utf8')
  stream.on('data', (d: string) => {
    buf += d
    let i
    while ((i = buf.indexOf('\n')) >= 0) {
      out.push(buf.slice(0, i))
      buf = buf.slice(i + 1)
    }
  })
  return out
}

function exited(p: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve({ code: p.exitCode, signal: p.signalCode })
  return new Promise((resolve) => p.once('exit', (code, signal) => resolve({ code, signal })))
}

t.test('docs/api.md: the emulated kernel state outlives a crashed client process; SIGTERM exits 0', async (t) => {
  const server = spawn(
    process.execPath,
    [`--import=${TS_IMPORT}`, path.join(here, 'serve-entry.ts'), '--addr', '127.0.0.1:0', '--profile', 'spec-fixture', '--clock', 'manual'],
    {
      cwd: projectRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  t.teardown(() => void (server.exitCode === null && server.kill('SIGKILL')))
  const out = lines(server.stdout!)
  const err = lines(server.stderr!)
  await waitFor('the ready line', () => out.length > 0 || server.exitCode !== null, 25_000)
  const m = READY.exec(out[0] ?? '')
  t.ok(m, 'the ready line on stdout', { stdout: out, stderr: err })
  if (!m) return
  const [, addr, profile, kernel, bootId] = m as unknown as [string, string, string, string, string]
  t.equal(profile, 'spec-fixture')
  t.equal(kernel, 'current-6.x')
  t.match(addr, /^127\.0\.0\.1:[1-9]\d*$/, 'the real port, not 0')

  const crash = spawn(process.execPath, [path.join(here, 'crash-client.mjs'), addr, HOSTBUS_PROTO_FILE, EMULATOR_PROTO_FILE], {
    cwd: projectRoot,
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  t.teardown(() => void (crash.exitCode === null && crash.kill('SIGKILL')))
  const crashOut = lines(crash.stdout!)
  await waitFor('the client to finish its writes', () => crashOut.includes('done') || crash.exitCode !== null, 15_000)
  t.same(crashOut, ['done'])
  crash.kill('SIGKILL')
  t.same(await exited(crash), { code: null, signal: 'SIGKILL' })

  const client = connectEmulator(addr, { timeoutMs: 3000 })
  t.teardown(() => client.close())
  const info = await client.info()
  t.equal(info.bootId, bootId, 'same boot: the host was not restarted')
  t.equal(info.now, 25, 'manual clock: the crashed client advanced it, nobody else')
  t.equal(await client.read(`${BUS}/apmask`), `0xfb${'f'.repeat(62)}\n`)
  t.equal(await client.read(`/sys/devices/vfio_ap/matrix/${M1}/guest_matrix`), '05.0004\n')
  t.match(
    await client.guestOpen(M1, 'vm2').catch((e: unknown) => e),
    { name: 'SysfsError', errno: 'EBUSY' },
    'V-25: the crashed client left the guest attached',
  )
  const seen: EmulatorEvent[] = []
  const sub = client.events(0, (e) => void seen.push(e))
  await waitFor('the apcb event of the guest open', () => seen.some((e) => e.kind === 'apcb' && e.guest === 'vm1'))
  sub.close()

  server.kill('SIGTERM')
  t.same(await exited(server), { code: 0, signal: null }, 'exit 0 on SIGTERM')
  t.equal(out.length, 1, 'exactly one line on stdout')
  t.ok(
    err.some((l) => /SIGTERM: stopping/.test(l)),
    'logs go to stderr',
  )
})

function memIo(): { io: CliIo; stdout: () => string; stderr: () => string } {
  const o = new PassThrough()
  const e = new PassThrough()
  let so = ''
  let se = ''
  o.on('data', (d) => (so += d))
  e.on('data', (d) => (se += d))
  return { io: { stdin: new PassThrough(), stdout: o, stderr: e, env: {} }, stdout: () => so, stderr: () => se }
}

t.test('bad options exit 2 with a clear message; --help exits 0', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--clock', 'fast'], /--clock: 'fast' is not one of realtime, manual/],
    [['--kernel', '7.x'], /--kernel: unknown kernel profile '7.x'/],
    [['--addr', 'localhost'], /--addr: 'localhost' is not HOST:PORT/],
    [['--addr', '127.0.0.1:70000'], /--addr: .* \(port 0\.\.65535\)/],
    [['--profile', '/nonexistent/p.json'], /--profile: profile '\/nonexistent\/p.json' is neither a builtin/],
    [['--tick-ms', '0'], /--tick-ms: expected an integer 1\.\.60000/],
    [['--bogus'], /Unknown option '--bogus'/],
    [['extra'], /extra/],
  ]
  for (const [argv, msg] of cases) {
    const m = memIo()
    t.equal(await emulatorServe(argv, m.io), 2, argv.join(' '))
    t.match(m.stderr(), msg)
    t.equal(m.stdout(), '')
  }
  const h = memIo()
  t.equal(await emulatorServe(['--help'], h.io), 0)
  t.match(h.stdout(), /^Usage: apmatrix emulator serve/)
})

t.test('an address already in use exits 1', async (t) => {
  const busy = net.createServer()
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r))
  t.teardown(() => busy.close())
  const listeners = process.listenerCount('SIGTERM')
  const m = memIo()
  t.equal(await emulatorServe(['--addr', `127.0.0.1:${(busy.address() as net.AddressInfo).port}`, '--clock', 'manual'], m.io), 1)
  t.match(m.stderr(), /cannot listen on 127\.0\.0\.1:\d+/)
  t.equal(process.listenerCount('SIGTERM'), listeners, 'no signal handler left behind')
})
