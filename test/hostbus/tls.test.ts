/**
 * Mutual TLS on the host bus (src/hostbus/tls.ts, docs/security.md (Agents and remote emulators)) over
 * real sockets, with certificates made by openssl: the service (startService, configured as
 * `apmatrix serve` reads APMATRIX_HOSTS_TLS_*) drives a host through an agent and through a remote
 * emulator that accept only its client certificate; the agent refuses a client without a certificate,
 * with one of another CA, and one of the right CA with another name; a service that does not trust the
 * agent's certificate reports the host unreachable at once, saying why, and never drives it.
 */
import fs from 'node:fs'
import path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import t, { type Test } from 'tap'
import { PassThrough } from 'node:stream'
import { loadAgentConfig } from '../../src/agent/agent-config.js'
import { startAgentServer, type AgentServer } from '../../src/agent/agent-server.js'
import { emulatorServe } from '../../src/cli/commands/emulator-serve.js'
import { loadConfig } from '../../src/config.js'
import { createHost } from '../../src/emulator/host.js'
import { connectEmulator } from '../../src/emulator-remote/client.js'
import { startEmulatorServer } from '../../src/emulator-remote/server.js'
import { connectHostBus, RemoteHostError } from '../../src/hostbus/client.js'
import { loadHostBusProto } from '../../src/hostbus/proto.js'
import { type HostBusClientTls, probeHostTls } from '../../src/hostbus/tls.js'
import { createLogger, startService } from '../../src/main.js'
import { type CertFiles, makeCa, makeLeaf } from '../auth/certs.js'
import { materializeSysfs, tempDir } from '../bus/sysfs-tree.js'
import { requireOrSkip, which } from '../helpers/required-tools.js'
import { restClient, until } from '../scenario/rest-client.js'
import { freshDatabase } from '../store/pg-helper.js'

const SERVICE_NAME = 'apmatrix-service'
const FULL = `0x${'f'.repeat(64)}`
const F9 = `0xf9${'f'.repeat(62)}`

interface Pki {
  /** CA of the hosts' server certificates and of the service's client certificate. */
  ca: CertFiles
  agent: CertFiles
  service: CertFiles
  /** Signed by the right CA, with another name. */
  other: CertFiles
  evilCa: CertFiles
  /** A client certificate of another CA. */
  impostor: CertFiles
  /** A server certificate of another CA (an agent the service must not trust). */
  evilAgent: CertFiles
}

function makePki(dir: string): Pki {
  const ca = makeCa(dir, 'hosts-ca')
  const evilCa = makeCa(dir, 'evil-ca')
  return {
    ca,
    agent: makeLeaf(dir, ca, 'agent', 'server'),
    service: makeLeaf(dir, ca, SERVICE_NAME, 'client'),
    other: makeLeaf(dir, ca, 'someone-else', 'client'),
    evilCa,
    impostor: makeLeaf(dir, evilCa, 'impostor', 'client'),
    evilAgent: makeLeaf(dir, evilCa, 'evil-agent', 'server'),
  }
}

const material = (ca: CertFiles, c: CertFiles): HostBusClientTls => ({
  ca: fs.readFileSync(ca.cert),
  cert: fs.readFileSync(c.cert),
  key: fs.readFileSync(c.key),
})

/** An agent over a spec-fixture tree on disk, serving `server` (cert and key) with client certificates of the hosts' CA named SERVICE_NAME. */
async function startTlsAgent(t: Test, pki: Pki, server: CertFiles): Promise<{ agent: AgentServer; root: string }> {
  const root = tempDir(t)
  materializeSysfs(createHost({ profile: 'spec-fixture' }), root)
  const agent = await startAgentServer({
    addr: '127.0.0.1:0',
    sysfsRoot: root,
    lockPath: path.join(tempDir(t), 's390apconfig.lock'),
    watch: 'poll',
    pollMs: 50,
    tls: { cert: server.cert, key: server.key, ca: pki.ca.cert, clientNames: [SERVICE_NAME] },
  })
  t.teardown(() => agent.close())
  return { agent, root }
}

/** The service of `hosts` (an APMATRIX_HOSTS or APMATRIX_EMULATOR_ADDR value) with the hosts' TLS settings of `tls`. */
async function serviceEnv(t: Test, hostsEnv: Record<string, string>, tls: { ca: string; cert: CertFiles }) {
  const db = await freshDatabase(t, 'sqlite')
  return loadConfig(
    {},
    {
      DATABASE_URL: db.url,
      APMATRIX_HTTP_ADDR: '127.0.0.1:0',
      APMATRIX_GRPC_ADDR: '127.0.0.1:0',
      APMATRIX_LOG_LEVEL: 'silent',
      APMATRIX_RESYNC_MS: '200',
      APMATRIX_LOCK_WAIT_MS: '300',
      APMATRIX_HOSTS_TLS_CA: tls.ca,
      APMATRIX_HOSTS_TLS_CERT: tls.cert.cert,
      APMATRIX_HOSTS_TLS_KEY: tls.cert.key,
      ...hostsEnv,
    },
  )
}

/** Info over a raw grpc-js client with `creds`: the status code the agent answers (OK when it answers). */
function infoStatus(addr: string, creds: grpc.ChannelCredentials): Promise<{ code: grpc.status; details: string }> {
  const { HostBus } = loadHostBusProto()
  const client = new HostBus(addr, creds)
  return new Promise((resolve) =>
    (client as unknown as { Info: (r: object, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void) => void }).Info(
      {},
      new grpc.Metadata(),
      { deadline: Date.now() + 5000 },
      (err) => {
        client.close()
        resolve(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: '' })
      },
    ),
  )
}

t.test('settings: TLS is mutual or off; beyond loopback it is required unless --insecure-no-tls', async (t) => {
  const dir = t.testdir({ 'a.pem': 'x', 'b.pem': 'x', 'c.pem': 'x' })
  const [a, b, c] = ['a.pem', 'b.pem', 'c.pem'].map((f) => path.join(dir, f)) as [string, string, string]
  t.match(loadAgentConfig({ tlsCert: a, tlsKey: b, tlsCa: c, tlsClientName: 'svc, svc2' }, {}), {
    tls: { cert: a, key: b, ca: c, clientNames: ['svc', 'svc2'] },
    insecureNoTls: false,
  })
  t.match(
    loadAgentConfig({ addr: '0.0.0.0:50152' }, { APMATRIX_AGENT_TLS_CERT: a, APMATRIX_AGENT_TLS_KEY: b, APMATRIX_AGENT_TLS_CA: c }),
    { tls: { ca: c, clientNames: [] } },
    'from the environment; any address with TLS',
  )
  t.equal(loadAgentConfig({}, {}).tls, undefined, 'loopback without TLS is fine')
  t.equal(loadAgentConfig({ addr: '0.0.0.0:50152', insecureNoTls: 'true' }, {}).insecureNoTls, true)
  const bad: Array<[Parameters<typeof loadAgentConfig>[0], RegExp]> = [
    [{ tlsCert: a, tlsKey: b }, /--tls-ca \/ APMATRIX_AGENT_TLS_CA: required with --tls-cert .*--tls-key/],
    [{ tlsCa: c }, /--tls-cert \/ APMATRIX_AGENT_TLS_CERT, --tls-key .*: required with --tls-ca/],
    [{ tlsCert: a, tlsKey: b, tlsCa: path.join(dir, 'missing.pem') }, /--tls-ca .*missing\.pem' cannot be read \(ENOENT\)/],
    [{ tlsClientName: 'svc' }, /--tls-client-name .*: needs mutual TLS/],
    [{ addr: '0.0.0.0:50152' }, /refusing to listen on 0\.0\.0\.0 without TLS: set --tls-cert/],
    [{ addr: '[2001:db8::1]:50152' }, /refusing to listen on 2001:db8::1 without TLS/],
    [{ addr: '0.0.0.0:50152', insecureNoTls: 'yes' }, /--insecure-no-tls .*'yes' is not 1, true, 0 or false/],
  ]
  const name = (flags: Record<string, string | undefined>) =>
    Object.entries(flags)
      .map(([k, v]) => `${k}=${path.basename(v ?? '')}`)
      .join(' ')
  for (const [flags, re] of bad) t.throws(() => loadAgentConfig(flags, {}), { name: 'ConfigError', message: re }, name(flags))

  // The service's side: the hosts' CA, its client certificate and key, all three or none.
  t.same(loadConfig({ hostsTlsCa: c, hostsTlsCert: a, hostsTlsKey: b }, {}).hostsTls, { ca: c, cert: a, key: b })
  t.equal(loadConfig({}, {}).hostsTls, undefined)
  t.throws(
    () => loadConfig({}, { APMATRIX_HOSTS_TLS_CA: c }),
    /APMATRIX_HOSTS_TLS_CERT \/ --hosts-tls-cert, APMATRIX_HOSTS_TLS_KEY .*: required with APMATRIX_HOSTS_TLS_CA/,
  )

  // emulator serve: the same rules, flags or APMATRIX_EMULATOR_TLS_*.
  const io = (env: Record<string, string> = {}) => {
    let err = ''
    const e = new PassThrough()
    e.on('data', (d) => (err += d))
    return { io: { stdin: new PassThrough(), stdout: new PassThrough(), stderr: e, env }, err: () => err }
  }
  for (const [argv, env, re] of [
    [['--addr', '0.0.0.0:0'], {}, /refusing to listen on 0\.0\.0\.0 without TLS/],
    [['--tls-cert', a], {}, /--tls-key \/ APMATRIX_EMULATOR_TLS_KEY, --tls-ca .*: required with --tls-cert/],
    [[], { APMATRIX_EMULATOR_TLS_KEY: b }, /required with --tls-key \/ APMATRIX_EMULATOR_TLS_KEY/],
  ] as const) {
    const m = io(env)
    t.equal(await emulatorServe([...argv], m.io), 2, `emulator serve ${argv.map((x) => path.basename(x)).join(' ')} ${Object.keys(env).join(' ')}`)
    t.match(m.err(), re)
  }
})

const missing = which('openssl') === undefined ? 'openssl is needed: apt-get install -y openssl' : undefined

requireOrSkip(t, 'mutual TLS between the service and its hosts', missing, async (t) => {
  const pki = makePki(t.testdir({}))

  t.test('the service drives a host through an agent that accepts only its certificate', async (t) => {
    const { agent, root } = await startTlsAgent(t, pki, pki.agent)
    const cfg = await serviceEnv(t, { APMATRIX_HOSTS: `lpar1@${agent.address}` }, { ca: pki.ca.cert, cert: pki.service })
    t.same(cfg.hostsTls, { ca: pki.ca.cert, cert: pki.service.cert, key: pki.service.key }, 'the settings')
    const svc = await startService(cfg, createLogger(cfg.logLevel))
    t.teardown(() => svc.close())
    const call = restClient(svc.httpUrl)
    t.match((await call('GET', '/v1/hosts/lpar1')).body, { name: 'lpar1', driver: 'agent' }, 'registered over mutual TLS')
    await until('first contact', async () => (await call('GET', '/v1/hosts/lpar1/masks')).body?.status?.apmask === FULL || undefined)
    const put = await call('PUT', '/v1/hosts/lpar1/masks', { body: { apmask: '-5,-6' } })
    t.equal(put.status, 200, 'PUT masks', { body: put.text })
    await until('apmask written to the tree', async () => fs.readFileSync(path.join(root, 'bus/ap/apmask'), 'utf8') === `${F9}\n` || undefined)
    const bus = connectHostBus(agent.address, { tls: material(pki.ca, pki.service), timeoutMs: 3000 })
    t.teardown(() => bus.close())
    const log = await bus.writeLog()
    t.ok(
      log.entries.some((e) => e.path === '/sys/bus/ap/apmask' && e.fence?.holder === svc.reconciler.holder && !e.fenceRefused),
      'the write came from the service, fenced with its lease',
    )
  })

  t.test('the agent refuses a client without a certificate, with one of another CA, or with another name', async (t) => {
    const { agent, root } = await startTlsAgent(t, pki, pki.agent)
    const ca = fs.readFileSync(pki.ca.cert)
    const withCert = (c: CertFiles, trust = ca) => grpc.credentials.createSsl(trust, fs.readFileSync(c.key), fs.readFileSync(c.cert))
    t.equal((await infoStatus(agent.address, withCert(pki.service))).code, grpc.status.OK, 'the service certificate: answered')
    t.equal((await infoStatus(agent.address, grpc.credentials.createInsecure())).code, grpc.status.UNAVAILABLE, 'plaintext: no connection')
    t.equal((await infoStatus(agent.address, grpc.credentials.createSsl(ca))).code, grpc.status.UNAVAILABLE, 'TLS without a client certificate: no connection')
    t.equal((await infoStatus(agent.address, withCert(pki.impostor))).code, grpc.status.UNAVAILABLE, 'a certificate of another CA: no connection')
    const named = await infoStatus(agent.address, withCert(pki.other))
    t.equal(named.code, grpc.status.PERMISSION_DENIED, 'the right CA, another name: refused')
    t.match(named.details, /client certificate someone-else is not one this host accepts/)

    // The host-bus client of a service whose certificate the agent refuses says why, at once, instead of
    // waiting out its connect timeout (60 s here: the test would time out long before).
    const impostor = connectHostBus(agent.address, { tls: material(pki.ca, pki.impostor), timeoutMs: 3000 })
    const err = await impostor.waitForReady(60_000).catch((e: unknown) => e)
    impostor.close()
    t.ok(err instanceof RemoteHostError, 'RemoteHostError')
    t.match(err, {
      code: 'UNAVAILABLE',
      message: /is not reachable: TLS handshake failed: .*(refused our client certificate|does not accept our client certificate)/,
    })

    const other = connectHostBus(agent.address, { tls: material(pki.ca, pki.other), timeoutMs: 3000 })
    t.match(await other.write('/sys/bus/ap/apmask', '-5\n').catch((e: unknown) => e), { name: 'RemoteHostError', status: 'PERMISSION_DENIED' })
    other.close()
    t.equal(fs.readFileSync(path.join(root, 'bus/ap/apmask'), 'utf8'), `${FULL}\n`, 'nothing was written')
    const reader = connectHostBus(agent.address, { tls: material(pki.ca, pki.service) })
    t.teardown(() => reader.close())
    t.same((await reader.writeLog()).entries, [], "the agent's write log is empty")
  })

  t.test('a service that does not trust the agent certificate: host unreachable at once, never driven', async (t) => {
    // The agent accepts the service's certificate, but shows one of another CA.
    const { agent, root } = await startTlsAgent(t, pki, pki.evilAgent)
    t.match(await probeHostTls(agent.address, material(pki.ca, pki.service), 5000), {
      outcome: 'refused',
      reason: /the host's certificate is not trusted .*SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY/,
    })
    const cfg = await serviceEnv(t, { APMATRIX_HOSTS: `lpar1@${agent.address}` }, { ca: pki.ca.cert, cert: pki.service })
    const err = await startService(cfg, createLogger(cfg.logLevel)).catch((e: unknown) => e)
    t.ok(err instanceof RemoteHostError, 'the start fails with RemoteHostError')
    t.match(err, {
      code: 'UNAVAILABLE',
      message: new RegExp(`host at ${agent.address} is not reachable: TLS handshake failed: the host's certificate is not trusted`),
    })
    // Read back with a client that trusts the agent's CA (and that the agent accepts).
    const reader = connectHostBus(agent.address, { tls: { ...material(pki.ca, pki.service), ca: fs.readFileSync(pki.evilCa.cert) } })
    t.teardown(() => reader.close())
    t.same((await reader.writeLog()).entries, [], 'not a single write reached the agent')
    t.equal(fs.readFileSync(path.join(root, 'bus/ap/apmask'), 'utf8'), `${FULL}\n`)
  })

  t.test('a host without TLS: a service configured for TLS says so at once', async (t) => {
    const plain = await startEmulatorServer({ addr: '127.0.0.1:0', profile: 'spec-fixture', clock: 'manual' })
    t.teardown(() => plain.close())
    const client = connectEmulator(plain.address, { tls: material(pki.ca, pki.service), timeoutMs: 3000 })
    t.teardown(() => client.close())
    t.match(await client.waitForReady(60_000).catch((e: unknown) => e), {
      name: 'RemoteHostError',
      message: /TLS handshake failed: the host's certificate is not trusted or the host does not speak TLS/,
    })
  })

  t.test('the service drives a remote emulator over mutual TLS; emulator controls ride the same channel', async (t) => {
    const server = await startEmulatorServer({
      addr: '127.0.0.1:0',
      profile: 'spec-fixture',
      clock: 'manual',
      tls: { cert: pki.agent.cert, key: pki.agent.key, ca: pki.ca.cert, clientNames: [SERVICE_NAME] },
    })
    t.teardown(() => server.close())
    const plain = connectEmulator(server.address, { timeoutMs: 2000 })
    t.match(await plain.read('/sys/bus/ap/apmask').catch((e: unknown) => e), { name: 'RemoteHostError', status: 'UNAVAILABLE' }, 'plaintext: refused')
    plain.close()
    const other = connectEmulator(server.address, { timeoutMs: 2000, tls: material(pki.ca, pki.other) })
    t.match(await other.guests().catch((e: unknown) => e), { name: 'RemoteHostError', status: 'PERMISSION_DENIED' }, 'another name: refused')
    other.close()

    const cfg = await serviceEnv(t, { APMATRIX_EMULATOR_ADDR: server.address }, { ca: pki.ca.cert, cert: pki.service })
    const svc = await startService(cfg, createLogger(cfg.logLevel))
    t.teardown(() => svc.close())
    const call = restClient(svc.httpUrl)
    t.match((await call('GET', '/v1/hosts/local')).body, { driver: 'remote-emulator', profile: 'spec-fixture' })
    const put = await call('PUT', '/v1/hosts/local/masks', { body: { apmask: '-5,-6' } })
    t.equal(put.status, 200, 'PUT masks', { body: put.text })
    const emu = connectEmulator(server.address, { tls: material(pki.ca, pki.service), timeoutMs: 3000 })
    t.teardown(() => emu.close())
    await until('apmask applied on the emulator', async () => (await emu.read('/sys/bus/ap/apmask')) === `${F9}\n` || undefined)
    const before = (await emu.info()).bootId
    const reboot = await call('POST', '/v1/hosts/local/emulator/reboot')
    t.equal(reboot.status, 200, `an emulator control through the service: ${reboot.text}`)
    t.not((await emu.info()).bootId, before, 'the emulator rebooted: its controls work over the TLS channel')
  })
})
