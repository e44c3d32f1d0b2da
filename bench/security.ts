/**
 * Security benchmark (`npm run bench -- security`, issue 9 §6): what authentication and authorization add to
 * a read. Three copies of the whole service (`startService`, SQLite, in-process `demo` host), all in this
 * process, measured in the same run:
 *  - plain: no TLS, no authentication (context);
 *  - tls: TLS, no authentication (every caller is the local admin subject; the authorization hook still runs);
 *  - secured: TLS and bearer JWTs verified with jose against a JWKS file (issuer, audience, algorithm
 *    allow-list), the reader's subject bound to `viewer` by a roles file;
 * and bare baselines paying for the same transport: a fastify route (http and https) answering the same JSON,
 * a grpc-js `GetMdev` handler (plaintext and TLS) answering the same bytes.
 *  1. REST `GET` of one matrix device; 2. gRPC `GetMdev`. Every target gets the same requests with the same
 *     bearer value (ignored where nothing checks it) from the same client in a worker thread, over keep-alive
 *     connections (a handful of TLS handshakes per round), short rounds alternating over the targets. For
 *     each: throughput, latency, and the servers' CPU time per operation: this process's CPU time over the
 *     round (every server runs here, with libuv's pool where WebCrypto checks signatures) minus the client
 *     thread's own (from /proc/thread-self). The figure: CPU per read of secured over tls (authentication +
 *     authorization), goal < +20%; CPU time is what a read costs whatever else the machine runs, where
 *     throughput on a shared machine swings by more than that.
 *  3. `Authenticator.authenticate` alone on this thread, one call per event-loop turn: the JWT check by itself.
 * JWTs signed with ES256 (the figure) and RS256 (context). Records the goals rest-get-auth and grpc-get-auth.
 * Figures only: nothing passes or fails (style.md habit 6). Needs `openssl` for the certificates.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import type { SettingName } from '../src/config.js'
import { loadConfig } from '../src/config.js'
import { buildSecurity } from '../src/main.js'
import { makeCa, makeLeaf } from '../test/auth/certs.js'
import { GET_MDEV_PATH, getMdevCodec, startBareGetMdev, startBareRoute, type BareServer, type ServerTls } from './baselines.js'
import { rawUnary, runUnaryLoad, type GrpcConn } from './grpc-clients.js'
import { type GoalId, recordGoal } from './goals.js'
import { chooseClient, type ClientAuth, fmtInt, fmtMs, httpLoad, percentile, printTable } from './http-load-helpers.js'
import { callJson, expectStatus, findMdev, isReady, processCpuMs, startBenchService, waitUntil, type BenchService } from './service-helpers.js'
import type { BenchSuite } from './suite.js'

const HOST = 'local'
const UUID = 'b0000000-0000-4000-8900-000000000001'
// demo: adapter 0 and usage domain 1 exist (src/emulator/PROFILES.md).
const SPEC = { adapters: [0], domains: [1] }
const ROUTE = `/v1/hosts/${HOST}/mdevs/${UUID}`
const REST_CONCURRENCY = 16
const GRPC_CONCURRENCY = 32
const GRPC_CHANNELS = 4
const LOAD_S = 2
const WARMUP_S = 1
/** Rounds per target, alternating over the targets so drift in machine load hits them alike (short and many). */
const ROUNDS = 5
/** `authenticate` loops in flight for figure 3, and how long each token is timed. */
const AUTH_LOOPS = 16
const AUTH_MS = 2000
const ISSUER = 'https://idp.bench.invalid'
const AUDIENCE = 'apmatrix-bench'
const READER = 'bench-reader'
const ADMIN = 'bench-admin'
const RBAC = `bindings:\n  - subjects: [${READER}]\n    roles: [viewer]\n  - subjects: [${ADMIN}]\n    roles: [admin]\n`
/** The JWT algorithm of the goal figure (the tests' choice, and the costlier check of the two measured). */
const GOAL_ALG = 'ES256'
const ALGS = ['ES256', 'RS256'] as const
type Alg = (typeof ALGS)[number]

/** Certificates, JWKS, roles file and tokens in a throw-away folder. */
interface Material {
  dir: string
  ca: string
  server: ServerTls
  /** Settings of the secured service (TLS + JWT + roles). */
  securedFlags: Partial<Record<SettingName, string>>
  tlsFlags: Partial<Record<SettingName, string>>
  /** A reader's token per algorithm, and an admin token (ES256) for the set-up. */
  readerToken: Record<Alg, string>
  adminToken: string
}

async function makeMaterial(): Promise<Material> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-bench-sec-'))
  const ca = makeCa(dir, 'bench-ca')
  const leaf = makeLeaf(dir, ca, 'localhost', 'server')
  const keys = { ES256: await generateKeyPair('ES256'), RS256: await generateKeyPair('RS256') }
  const jwks = { keys: await Promise.all(ALGS.map(async (alg) => ({ ...(await exportJWK(keys[alg].publicKey)), kid: alg, alg, use: 'sig' }))) }
  fs.writeFileSync(path.join(dir, 'jwks.json'), JSON.stringify(jwks))
  fs.writeFileSync(path.join(dir, 'rbac.yaml'), RBAC)
  const sign = (alg: Alg, sub: string) =>
    new SignJWT({})
      .setProtectedHeader({ alg, kid: alg })
      .setSubject(sub)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .setExpirationTime('2h')
      .sign(keys[alg].privateKey)
  const tlsFlags = { tlsCert: leaf.cert, tlsKey: leaf.key }
  return {
    dir,
    ca: fs.readFileSync(ca.cert, 'utf8'),
    server: { cert: fs.readFileSync(leaf.cert), key: fs.readFileSync(leaf.key) },
    tlsFlags,
    securedFlags: {
      ...tlsFlags,
      jwtJwks: path.join(dir, 'jwks.json'),
      jwtIssuer: ISSUER,
      jwtAudience: AUDIENCE,
      jwtAlgorithms: ALGS.join(','),
      rbacFile: path.join(dir, 'rbac.yaml'),
    },
    readerToken: { ES256: await sign('ES256', READER), RS256: await sign('RS256', READER) },
    adminToken: await sign('ES256', ADMIN),
  }
}

/** One service of the comparison and how a client reaches it. */
interface Variant {
  name: string
  bench: BenchService
  /** CA and an admin bearer for the set-up calls. */
  setup: ClientAuth
}

/** Frees the demo adapters (B-21: `0x` clears the mask), stores the device and waits until it is Ready. */
async function storeDevice(v: Variant): Promise<void> {
  const { svc } = v.bench
  expectStatus(`${v.name}: PUT masks`, await callJson(svc.httpUrl, 'PUT', `/v1/hosts/${HOST}/masks`, { apmask: '0x' }, undefined, v.setup), 200)
  expectStatus(`${v.name}: POST mdev`, await callJson(svc.httpUrl, 'POST', `/v1/hosts/${HOST}/mdevs`, { uuid: UUID, spec: SPEC }, undefined, v.setup), 201)
  const ready = await waitUntil(
    svc,
    async () => {
      const r = await findMdev(svc, HOST, UUID)
      return !!r && isReady(r)
    },
    { timeoutMs: 30_000 },
  )
  if (!ready.ok) throw new Error(`${v.name}: ${UUID} did not become Ready`)
}

// ---- the comparison, both transports ------------------------------------------------------------

/** One round of one target: what the client saw, and the CPU time of the servers meanwhile. */
interface Round {
  ops: number
  seconds: number
  errors: number
  p50Ms: number
  p99Ms: number
  /** The CPU time of the client's thread when it ran in this process, ms. */
  clientCpuMs: number
  /** This process's CPU time during the round, minus the client's, ms. */
  cpuMs: number
}

/** A target of a table and one round of load on it. */
interface Target {
  name: string
  round(durationS: number): Promise<Omit<Round, 'cpuMs'>>
}

/** A target's rounds summed up. */
interface Figures {
  rate: number
  /** Server CPU per operation, µs. */
  cpuUs: number
}

/** The transports' words for a table. */
interface Words {
  title: string
  /** `req` or `call`. */
  op: string
  /** The secured service's goal. */
  goal: GoalId
}

/**
 * Runs `targets` (in the order bare plaintext, bare TLS, plain, tls, then secured per algorithm of ALGS):
 * a warm-up round each, then ROUNDS rounds alternating over them, noting the server thread's CPU time of
 * every round; prints the table and the comparisons and records the goal.
 */
async function compare(targets: Target[], words: Words): Promise<void> {
  const run = async (t: Target, durationS: number): Promise<Round> => {
    const cpu0 = processCpuMs()
    const r = await t.round(durationS)
    return { ...r, cpuMs: processCpuMs() - cpu0 - r.clientCpuMs }
  }
  for (const t of targets) await run(t, WARMUP_S)
  const rounds = targets.map((): Round[] => [])
  for (let r = 0; r < ROUNDS; r++) for (const [i, t] of targets.entries()) rounds[i]!.push(await run(t, LOAD_S))

  const sum = (rs: Round[], f: (r: Round) => number) => rs.reduce((a, r) => a + f(r), 0)
  const figs: Figures[] = rounds.map((rs) => ({
    rate: sum(rs, (r) => r.ops / r.seconds) / rs.length,
    cpuUs: (sum(rs, (r) => r.cpuMs) / sum(rs, (r) => r.ops)) * 1000,
  }))
  const [bareHttp, bareTls, plain, tls] = figs as [Figures, Figures, Figures, Figures]
  const secured = Object.fromEntries(ALGS.map((a, i) => [a, figs[SECURED_FROM + i]!])) as Record<Alg, Figures>
  const bareOf = (i: number) => (i === 0 || i === 2 ? bareHttp : bareTls)
  console.log(words.title)
  printTable([
    ['target', `${words.op}/s (mean)`, 'rounds', 'p50', 'p99', 'errors', `server CPU per ${words.op}`, 'CPU vs bare', 'CPU vs tls'],
    ...targets.map((t, i) => {
      const rs = rounds[i]!
      return [
        t.name,
        fmtInt(figs[i]!.rate),
        rs.map((r) => fmtInt(r.ops / r.seconds)).join(' / '),
        fmtMs(
          percentile(
            rs.map((r) => r.p50Ms),
            50,
          ),
        ),
        fmtMs(Math.max(...rs.map((r) => r.p99Ms))),
        fmtInt(sum(rs, (r) => r.errors)),
        `${fmtInt(figs[i]!.cpuUs)} µs`,
        i < 2 ? '' : `x${(figs[i]!.cpuUs / bareOf(i).cpuUs).toFixed(2)}`,
        i === 3 ? 'baseline' : i < SECURED_FROM ? '' : pctText(figs[i]!.cpuUs / tls.cpuUs - 1),
      ]
    }),
  ])
  const more = (m: Figures, base: Figures) =>
    `${pctText(m.cpuUs / base.cpuUs - 1)} server CPU per ${words.op} (${pctText(base.rate / m.rate - 1)} by throughput)`
  console.log(`TLS: bare ${more(bareTls, bareHttp)}; apmatrix ${more(tls, plain)}`)
  for (const a of ALGS) console.log(`authentication + authorization, JWT ${a}, on a read: ${more(secured[a], tls)}${a === GOAL_ALG ? ' (goal < +20%)' : ''}`)
  console.log(
    "server CPU: this process's CPU time over the round (every server runs here: its main thread, libuv's pool, GC) minus the client thread's own, per operation",
  )

  const errors = sum(rounds.flat(), (r) => r.errors)
  recordGoal(words.goal, {
    // As rates (operations per CPU-second), so the table's ratio is the baseline's CPU per read over the secured one's.
    measured: errors ? Number.NaN : 1e6 / secured[GOAL_ALG].cpuUs,
    baseline: 1e6 / tls.cpuUs,
    unit: `${words.op}/CPU-s`,
    note: `JWT ${GOAL_ALG} vs no auth, both over TLS: server CPU per read, ${ROUNDS} x ${LOAD_S} s alternating${errors ? `; ${errors} ERRORS` : ''}`,
  })
}

const pctText = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`

/** Where the secured rows sit in a table's targets: after bare plaintext, bare TLS, plain and tls. */
const SECURED_FROM = 4

// ---- 1. REST -----------------------------------------------------------------------------------

async function benchRest(m: Material, plain: Variant, tls: Variant, secured: Variant): Promise<void> {
  const client = await chooseClient()
  const one = await callJson<object>(secured.bench.svc.httpUrl, 'GET', ROUTE, undefined, undefined, {
    ca: m.ca,
    headers: { authorization: `Bearer ${m.readerToken[GOAL_ALG]}` },
  })
  expectStatus('secured GET', one, 200)
  const bare: BareServer[] = [
    await startBareRoute('/v1/hosts/:host/mdevs/:uuid', one.body),
    await startBareRoute('/v1/hosts/:host/mdevs/:uuid', one.body, m.server),
  ]
  try {
    // Every target gets the reader's bearer header: the client's work and the request bytes are the same.
    const header = (alg: Alg): ClientAuth => ({ ca: m.ca, headers: { authorization: `Bearer ${m.readerToken[alg]}` } })
    const targets = [
      { name: 'bare fastify route, http', base: bare[0]!.base, auth: header(GOAL_ALG) },
      { name: 'bare fastify route, https', base: bare[1]!.base, auth: header(GOAL_ALG) },
      { name: 'apmatrix plain (http, no auth)', base: plain.bench.svc.httpUrl, auth: header(GOAL_ALG) },
      { name: 'apmatrix tls (https, no auth)', base: tls.bench.svc.httpUrl, auth: header(GOAL_ALG) },
      ...ALGS.map((alg) => ({ name: `apmatrix secured (https + JWT ${alg}, viewer)`, base: secured.bench.svc.httpUrl, auth: header(alg) })),
    ]
    for (const t of targets) {
      const r = await callJson(t.base, 'GET', ROUTE, undefined, undefined, t.auth)
      expectStatus(t.name, r, 200)
      if (Math.abs(r.bytes - one.bytes) > 8) throw new Error(`${t.name}: ${r.bytes} bytes, not about ${one.bytes} like the others`)
    }
    await compare(
      targets.map((t) => ({
        name: t.name,
        round: async (durationS) => {
          const r = await httpLoad(t.base + ROUTE, { concurrency: REST_CONCURRENCY, durationS, client, ...t.auth })
          return { ops: r.requests, seconds: r.seconds, errors: r.errors, p50Ms: r.p50Ms, p99Ms: r.p99Ms, clientCpuMs: r.clientCpuMs }
        },
      })),
      {
        title: `\n1. REST GET one matrix device (${one.bytes} bytes of JSON): ${client === 'wrk' ? 'wrk -t1' : 'node:http(s) worker'}, ${REST_CONCURRENCY} keep-alive connections, ${ROUNDS} x ${LOAD_S} s per target alternating after ${WARMUP_S} s each`,
        op: 'req',
        goal: 'rest-get-auth',
      },
    )
  } finally {
    for (const b of bare) await b.close()
  }
}

// ---- 2. gRPC -----------------------------------------------------------------------------------

/**
 * The reply of one call to `v`'s gRPC side over TLS. When the TLS handshake is refused, says so loudly and
 * reloads the TLS files once (SIGHUP's path): a certificate provider that hands grpc-js its first
 * certificate synchronously, before grpc-js watches for it, leaves the gRPC side refusing every TLS
 * handshake until the first reload.
 */
async function grpcTlsReply(v: Variant, request: Buffer, c: GrpcConn): Promise<Buffer> {
  try {
    return await rawUnary(v.bench.svc.grpcAddr, GET_MDEV_PATH, request, c)
  } catch (e) {
    if ((e as { code?: number }).code !== grpc.status.UNAVAILABLE) throw e
    console.log(`NOTE: ${v.name}: gRPC refused the TLS handshake after start (${(e as Error).message.slice(0, 120)}); reloading the TLS files once`)
    await v.bench.svc.reload()
    return rawUnary(v.bench.svc.grpcAddr, GET_MDEV_PATH, request, c)
  }
}

async function benchGrpc(m: Material, plain: Variant, tls: Variant, secured: Variant): Promise<void> {
  const request = getMdevCodec().requestSerialize({ host: HOST, uuid: UUID })
  const rootCert = Buffer.from(m.ca)
  const conn = (alg: Alg, tlsOn: boolean): GrpcConn => ({
    ...(tlsOn ? { rootCert, serverName: 'localhost' } : {}),
    metadata: { authorization: `Bearer ${m.readerToken[alg]}` },
  })
  const reply = await grpcTlsReply(secured, request, conn(GOAL_ALG, true))
  await grpcTlsReply(tls, request, conn(GOAL_ALG, true))
  const bare = [await startBareGetMdev(reply), await startBareGetMdev(reply, m.server)]
  try {
    const targets = [
      { name: 'bare grpc-js handler, plaintext', target: bare[0]!.base, conn: conn(GOAL_ALG, false) },
      { name: 'bare grpc-js handler, TLS', target: bare[1]!.base, conn: conn(GOAL_ALG, true) },
      { name: 'apmatrix plain (no TLS, no auth)', target: plain.bench.svc.grpcAddr, conn: conn(GOAL_ALG, false) },
      { name: 'apmatrix tls (TLS, no auth)', target: tls.bench.svc.grpcAddr, conn: conn(GOAL_ALG, true) },
      ...ALGS.map((alg) => ({ name: `apmatrix secured (TLS + JWT ${alg}, viewer)`, target: secured.bench.svc.grpcAddr, conn: conn(alg, true) })),
    ]
    for (const t of targets) {
      const r = await rawUnary(t.target, GET_MDEV_PATH, request, t.conn)
      if (Math.abs(r.length - reply.length) > 8) throw new Error(`${t.name}: ${r.length} bytes, not about ${reply.length} like the others`)
    }
    await compare(
      targets.map((t) => ({
        name: t.name,
        round: async (durationS) => {
          // No warm-up inside the round (compare warms every target up first): every call counts, handshakes included.
          const r = await runUnaryLoad({
            path: GET_MDEV_PATH,
            request,
            concurrency: GRPC_CONCURRENCY,
            channels: GRPC_CHANNELS,
            warmupS: 0,
            durationS,
            target: t.target,
            ...t.conn,
          })
          const lat = [...r.latencies]
          return { ops: r.calls, seconds: r.seconds, errors: r.errors, p50Ms: percentile(lat, 50), p99Ms: percentile(lat, 99), clientCpuMs: r.clientCpuMs }
        },
      })),
      {
        title: `\n2. gRPC GetMdev, one stored device (reply ${reply.length} bytes): ${GRPC_CONCURRENCY} calls in flight over ${GRPC_CHANNELS} channels from a worker thread, ${ROUNDS} x ${LOAD_S} s per target alternating after ${WARMUP_S} s each`,
        op: 'call',
        goal: 'grpc-get-auth',
      },
    )
  } finally {
    for (const b of bare) await b.close()
  }
}

// ---- 3. authenticate alone ---------------------------------------------------------------------

/**
 * `authenticate` of each reader token on this thread, AUTH_LOOPS loops, each call in its own event-loop
 * turn (as calls arriving from sockets are), with an authenticator built from the secured service's settings.
 */
async function benchAuthenticate(m: Material): Promise<void> {
  const { auth } = buildSecurity(loadConfig({ databaseUrl: `file:${path.join(m.dir, 'unused.db')}`, logLevel: 'silent', ...m.securedFlags }, {}))
  const rows = [['bearer', 'authenticate/s', 'µs each (wall)', 'CPU µs each']]
  for (const alg of ALGS) {
    const authorization = `Bearer ${m.readerToken[alg]}`
    const p = await auth.authenticate({ authorization })
    if (p.subject !== READER || !p.roles.includes('viewer')) throw new Error(`authenticate: ${JSON.stringify(p)}`)
    let n = 0
    const cpu0 = processCpuMs()
    const t0 = performance.now()
    const deadline = t0 + AUTH_MS
    await Promise.all(
      Array.from({ length: AUTH_LOOPS }, async () => {
        while (performance.now() < deadline) {
          await new Promise((resolve) => setImmediate(resolve))
          await auth.authenticate({ authorization })
          n++
        }
      }),
    )
    const rate = (n / (performance.now() - t0)) * 1000
    rows.push([`JWT ${alg}`, fmtInt(rate), (1e6 / rate).toFixed(0), (((processCpuMs() - cpu0) / n) * 1000).toFixed(0)])
  }
  console.log(
    `\n3. Authenticator.authenticate alone (jose jwtVerify + role bindings), ${AUTH_LOOPS} loops, one call per event-loop turn, ${AUTH_MS / 1000} s each; CPU: this process's`,
  )
  printTable(rows)
}

async function run(): Promise<void> {
  const m = await makeMaterial()
  const variants: Variant[] = []
  try {
    variants.push({ name: 'plain', bench: await startBenchService('demo'), setup: {} })
    variants.push({ name: 'tls', bench: await startBenchService('demo', m.tlsFlags), setup: { ca: m.ca } })
    variants.push({
      name: 'secured',
      bench: await startBenchService('demo', m.securedFlags),
      setup: { ca: m.ca, headers: { authorization: `Bearer ${m.adminToken}` } },
    })
    for (const v of variants) await storeDevice(v)
    const [plain, tls, secured] = variants as [Variant, Variant, Variant]
    console.log(
      `three services on demo (plain ${plain.bench.svc.httpUrl}, tls ${tls.bench.svc.httpUrl}, secured ${secured.bench.svc.httpUrl}), one device each`,
    )
    await benchRest(m, plain, tls, secured)
    await benchGrpc(m, plain, tls, secured)
    await benchAuthenticate(m)
  } finally {
    for (const v of variants) await v.bench.stop()
    fs.rmSync(m.dir, { recursive: true, force: true })
  }
}

/** The security suite of `npm run bench`. */
export const securitySuite: BenchSuite = {
  name: 'security',
  description: 'cost of TLS + JWT authentication and authorization on a read: REST GET and gRPC GetMdev vs the same without auth and bare TLS baselines',
  run,
}
