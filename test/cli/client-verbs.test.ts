/**
 * The client verbs of `apmatrix` (issue 4 §3) against the real service in-process (startService, SQLite,
 * the `demo` emulated host, the real reconciler): output of each verb, `--json` parses, and the exit
 * codes of src/cli/EXIT-CODES.md for each class of error.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import net from 'node:net'
import path from 'node:path'
import { projectRoot } from '../../src/paths.js'
import { ApiError, exitCodeOf } from '../../src/cli/client/api-error.js'
import { cli, eventsServer, startServer, writeDoc, type ServerFixture } from './cli-fixture.js'

const U1 = '11111111-0000-4000-8000-000000000001'
const U2 = '11111111-0000-4000-8000-000000000002'
const U3 = '11111111-0000-4000-8000-000000000003'
const U4 = '11111111-0000-4000-8000-000000000004'
const U5 = '11111111-0000-4000-8000-000000000005'
const U6 = '11111111-0000-4000-8000-000000000006'

let fx: ServerFixture
const $ = (...argv: string[]) => cli(fx.url, argv)

/** Polls the API until the device is Ready for its generation (setup for verbs that read a converged device). */
async function converged(uuid: string, ms = 10_000): Promise<any> {
  const until = Date.now() + ms
  for (;;) {
    const { status, body } = await fx.api('GET', `/v1/hosts/local/mdevs/${uuid}`)
    const ready = body?.status?.conditions?.find((c: any) => c.type === 'Ready')
    if (status === 200 && body.status.observedGeneration === body.metadata.generation && ready?.status === 'True') return body
    if (Date.now() > until) throw new Error(`${uuid} not Ready: ${JSON.stringify(body?.status).slice(0, 400)}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

async function closedPort(): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const port = (srv.address() as net.AddressInfo).port
  await new Promise((r) => srv.close(r))
  return port
}

t.before(async () => {
  fx = await startServer(t)
})

t.test('help lists the client verbs and the exit codes', async (t) => {
  const r = await $('--help')
  t.equal(r.code, 0)
  for (const verb of ['inventory', 'mdev define', 'mdev modify', 'masks set', 'plan', 'apply', 'events']) t.match(r.stdout, verb)
  t.match(r.stdout, /3 refused by admission/)
  const m = await $('help', 'masks', 'set')
  t.match(m.stdout, '--apmask=-5,-6', 'the = form for values starting with - is documented')
})

t.test('inventory: lszcrypt-like table, --queues, --json', async (t) => {
  const r = await $('inventory')
  t.equal(r.code, 0, r.stderr)
  const lines = r.stdout.trimEnd().split('\n')
  t.match(lines[0], /^CARD\.DOMAIN\s+TYPE\s+MODE\s+STATUS\s+REQUESTS\s+DRIVER\s+OWNER$/)
  t.same(
    lines.slice(1).map((l) => l.split(/\s+/)[0]),
    ['00', '01', '02', '05', '06', '07'],
    'one row per card of the demo profile',
  )
  t.match(
    lines.find((l) => l.startsWith('05')),
    /^05\s+CEX8C\s+CCA-Coproc\s+online\s+\d+\s+cex4card\s+-$/,
  )
  const q = await $('inventory', '--queues')
  t.match(q.stdout, /^05\.0004\s+CEX8C\s+CCA-Coproc\s+online\s+\d+\s+cex4queue\s+-$/m, 'a queue row under its card')
  const j = await $('inventory', '--json')
  const doc = JSON.parse(j.stdout)
  t.equal(doc.adapters.length, 6)
  t.ok(doc.queues.some((x: any) => x.apqn === '05.0047'))
  t.same(doc.domains.usageDomains, [1, 2, 4, 5, 10, 71])
  const nf = await $('inventory', '--host', 'nosuchhost')
  t.equal(nf.code, 4, 'unknown host: not found')
})

t.test('usage errors exit 2 and name the problem', async (t) => {
  const cases: [string[], RegExp][] = [
    [['mdev', 'define', '--adapters', '5', '--domains', 'x'], /--domains: 'x' is not an id/],
    [['mdev', 'define', '--adapters', '300'], /--adapters: '300'/],
    [['mdev', 'define', '--domains', '7-4'], /backwards/],
    [['masks', 'set', '--apmask', '-5'], /--apmask=/],
    [['masks', 'set'], /nothing to set/],
    [['mdev', 'get', 'not-a-uuid'], /not a UUID/],
    [['mdev', 'get'], /missing UUID/],
    [['mdev', 'modify', U1], /nothing to modify/],
    [['inventory', '--server', 'ftp://x'], /not an http/],
    [['apply', '--timeout', 'soon', '-f', 'x.json'], /--timeout: 'soon' is not a duration/],
    [['plan', '-f', '/nonexistent/desired.json'], /ENOENT/],
    [['events', '--since', '-1'], /--since/],
  ]
  for (const [argv, msg] of cases) {
    const r = await $(...argv)
    t.equal(r.code, 2, argv.join(' '))
    t.match(r.stderr, msg, argv.join(' '))
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace')
  }
})

t.test('mdev define before the masks allow it: refused (3) with every violation and its fix; nothing stored', async (t) => {
  const r = await $('mdev', 'define', '--uuid', U1, '--adapters', '5', '--domains', '4,0x47')
  t.equal(r.code, 3)
  t.match(r.stderr, /APQN_RESERVED/)
  t.match(r.stderr, /- APQN_RESERVED 05\.0004 \(held by host\)/)
  t.match(r.stderr, /- APQN_RESERVED 05\.0047 /, 'every violation, not only the first')
  t.match(r.stderr, /fix: clear bit/)
  t.match(r.stderr, /request id /)
  t.equal(r.stdout, '')
  const list = await $('mdev', 'list', '--json')
  t.same(JSON.parse(list.stdout).items, [])
})

t.test('masks: set --dry-run stores nothing; set with kernel relative syntax; get', async (t) => {
  const dry = await $('masks', 'set', '--apmask=-5,-6', '--aqmask=-4,-0x47', '--dry-run')
  t.equal(dry.code, 0, dry.stderr)
  t.match(dry.stdout, /Operations \(\d+\):/)
  t.match(dry.stdout, /takeFromHost/)
  t.match(dry.stdout, /Violations: none/)
  let masks = (await fx.api('GET', '/v1/hosts/local/masks')).body
  t.ok(masks.spec.apmaskIds.includes(5), 'dry run did not store')

  const set = await $('masks', 'set', '--apmask=-5,-6', '--aqmask=-4,-0x47')
  t.equal(set.code, 0, set.stderr)
  t.match(set.stdout, /^apmask\s+desired\s+0xf9f{62}\s+0-4,7-255$/m)
  t.match(set.stdout, /^aqmask\s+desired\s+0xf7f{14}fe\S*\s+0-3,5-70,72-255$/m)
  masks = (await fx.api('GET', '/v1/hosts/local/masks')).body
  t.notOk(masks.spec.apmaskIds.includes(5))
  const get = await $('masks', 'get', '--json')
  t.same(JSON.parse(get.stdout).spec, masks.spec)
  const text = await $('masks', 'get')
  t.match(text.stdout, /observed/)
})

t.test('mdev define, idempotent define, conflicts (5), overlap refused (3)', async (t) => {
  const r = await $('mdev', 'define', '--uuid', U1, '--adapters', '5', '--domains', '4,0x47', '-l', 'team=a', '--owner', 'alice')
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout, `${U1}\n`, 'prints the UUID like mdevctl define')
  const again = await $('mdev', 'define', '--uuid', U1, '--adapters', '5', '--domains', '4,71', '-l', 'team=a', '--owner', 'alice')
  t.equal(again.code, 0, 'the same spec again is a no-op')
  t.match(again.stderr, /already defined/)
  const other = await $('mdev', 'define', '--uuid', U1, '--adapters', '6', '--domains', '4')
  t.equal(other.code, 5, 'the same uuid with another spec: ALREADY_EXISTS')
  t.match(other.stderr, /ALREADY_EXISTS/)
  const overlap = await $('mdev', 'define', '--uuid', U2, '--adapters', '5-6', '--domains', '4')
  t.equal(overlap.code, 3)
  t.match(overlap.stderr, new RegExp(`APQN_IN_USE 05\\.0004 \\(held by ${U1}\\)`))
  const badDrain = await $('mdev', 'define', '--adapters', '6', '--domains', '0x47', '--drain-on-timeout', 'drop')
  t.not(badDrain.code, 0, 'a bad drain policy is refused')
  t.match(badDrain.stderr, /--drain-on-timeout/)
  const gen = await $('mdev', 'define', '--adapters', '6', '--domains', '0x47', '--stopped', '--drain-timeout', '90', '--drain-on-timeout', 'wait', '--json')
  t.equal(gen.code, 0, gen.stderr)
  const obj = JSON.parse(gen.stdout)
  t.match(
    obj,
    { spec: { adapters: [6], domains: [71], state: 'stopped', drain: { timeoutSeconds: 90, onTimeout: 'wait' } } },
    'a generated uuid, stopped, its drain policy',
  )
  const shown = await $('mdev', 'get', obj.metadata.uuid)
  t.match(shown.stdout, /^ {2}Drain:\s+timeout 90 s, on timeout wait$/m)
  t.equal((await fx.api('DELETE', `/v1/hosts/local/mdevs/${obj.metadata.uuid}`)).status, 202)
})

t.test('mdev get and list: readable views, filters, --json, not found (4)', async (t) => {
  await converged(U1)
  const g = await $('mdev', 'get', U1)
  t.equal(g.code, 0, g.stderr)
  t.match(g.stdout, /^UUID:\s+11111111-0000-4000-8000-000000000001$/m)
  t.match(g.stdout, /^ {2}Domains:\s+4,71 \(hex 04,47\)$/m)
  t.match(g.stdout, /^ {2}Matrix:\s+05\.0004 05\.0047$/m)
  t.match(g.stdout, /^ {2}Guest matrix:\s+05\.0004 05\.0047$/m)
  t.match(g.stdout, /^ {2}Ready\s+True\s+Active\s+1\s/m)
  const gj = JSON.parse((await $('mdev', 'get', U1, '--json')).stdout)
  t.same(gj.status.matrix, ['05.0004', '05.0047'])
  const l = await $('mdev', 'list')
  t.match(l.stdout, /^UUID\s+STATE\s+STATUS\s+READY\s+CONDITIONS\s+ADAPTERS\s+DOMAINS\s+CONTROL\s+GEN\s+OWNER$/m)
  t.match(l.stdout, new RegExp(`^${U1}\\s+started\\s+Ready\\s+True\\s+-\\s+5\\s+4,71\\s+-\\s+1\\s+alice$`, 'm'), 'no condition other than Ready is True')
  t.equal(JSON.parse((await $('mdev', 'list', '-l', 'team=a', '--json')).stdout).items.length, 1)
  t.equal(JSON.parse((await $('mdev', 'list', '-l', 'team=b', '--json')).stdout).items.length, 0)
  t.equal(JSON.parse((await $('mdev', 'list', '--owner', 'bob', '--json')).stdout).items.length, 0)
  t.equal(JSON.parse((await $('mdev', 'list', '--state', 'started', '--json')).stdout).items[0].metadata.uuid, U1)
  const nf = await $('mdev', 'get', U4)
  t.equal(nf.code, 4)
  t.match(nf.stderr, /NOT_FOUND/)
})

t.test('mdev modify: edits lists with If-Match; stale version exits 5; retries once on a concurrent write', async (t) => {
  const add = await $('mdev', 'modify', U1, '--add-adapter', '6', '--remove-domain', '0x47')
  t.equal(add.code, 0, add.stderr)
  t.match(add.stdout, /modified \(generation 2\): adapters 5,6, domains 4, control domains -/)
  const dev = (await fx.api('GET', `/v1/hosts/local/mdevs/${U1}`)).body
  t.same([dev.spec.adapters, dev.spec.domains], [[5, 6], [4]])
  const same = await $('mdev', 'modify', U1, '--add-adapter', '6')
  t.match(same.stdout, /unchanged/, 'nothing to write: no PATCH')

  const stale = await $('mdev', 'modify', U1, '--add-domain', '0x47', '--resource-version', 'not-the-current-version')
  t.equal(stale.code, 5)
  t.match(stale.stderr, /CONFLICT/)

  // Another writer changes the device between the CLI's read and its PATCH: the first PATCH is stale.
  const realFetch = globalThis.fetch
  let raced = false
  globalThis.fetch = (async (input: string | URL | Request, init?: RequestInit) => {
    if (!raced && init?.method === 'PATCH') {
      raced = true
      await realFetch(`${fx.url}/v1/hosts/local/mdevs/${U1}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/merge-patch+json' },
        body: JSON.stringify({ labels: { raced: 'yes' } }),
      })
    }
    return realFetch(input, init)
  }) as typeof fetch
  let retry
  try {
    retry = await $('mdev', 'modify', U1, '--add-domain', '0x47')
  } finally {
    globalThis.fetch = realFetch
  }
  t.ok(raced)
  t.equal(retry.code, 0, retry.stderr)
  t.match(retry.stderr, /retrying/)
  const after = (await fx.api('GET', `/v1/hosts/local/mdevs/${U1}`)).body
  t.same(after.spec.domains, [4, 71], 'the retry applied the edit')
  t.equal(after.metadata.labels.raced, 'yes', "and kept the other writer's change")
  const lbl = await $('mdev', 'modify', U1, '-l', 'raced-')
  t.equal(lbl.code, 0)
  t.notOk('raced' in (await fx.api('GET', `/v1/hosts/local/mdevs/${U1}`)).body.metadata.labels, 'k- removes a label')
})

t.test('mdev stop and start patch the desired state; --wait returns once converged', async (t) => {
  const s = await $('mdev', 'stop', U1, '--wait')
  t.equal(s.code, 0, s.stderr)
  t.match(s.stdout, `${U1}: stopped (generation`)
  t.match(s.stderr, `${U1}: Ready (Stopped)`)
  // Read right after the command returned: --wait is what made it so.
  const stopped = (await fx.api('GET', `/v1/hosts/local/mdevs/${U1}`)).body
  t.equal(stopped.status.observedGeneration, stopped.metadata.generation)
  t.equal(stopped.status.active, false, 'stopped: not on the bus')
  const st = await $('mdev', 'start', U1, '--json')
  t.equal(JSON.parse(st.stdout).spec.state, 'started')
  t.equal((await converged(U1)).status.active, true)
  t.equal((await $('mdev', 'start', U4)).code, 4)
  t.equal((await $('mdev', 'start', U1, '--wait-timeout', '1s')).code, 2, '--wait-timeout needs --wait')
})

t.test('plan: operations, claimed APQNs with owners; violations exit 3 with fixes', async (t) => {
  const ok = writeDoc(fx, 'ok.json', { owner: 'ops', masks: { apmask: '-7', aqmask: '-5' }, mdevs: [{ uuid: U3, spec: { adapters: [7], domains: [5] } }] })
  const p = await $('plan', '-f', ok)
  t.equal(p.code, 0, p.stderr + p.stdout)
  t.match(p.stdout, /createMdev\s+11111111-0000-4000-8000-000000000003/)
  t.match(p.stdout, /configureMdev\s+\S+: adapters \+7; domains \+5/)
  t.match(p.stdout, /^ {2}07\.0005\s+11111111-0000-4000-8000-000000000003\s+host$/m, 'claimed APQN with its current owner')
  t.match(p.stdout, /^Drained queues \(\d+\): /m)
  t.match(p.stdout, /Violations: none/)
  const pj = await $('plan', '-f', ok, '--json')
  t.equal(JSON.parse(pj.stdout).violations.length, 0)
  t.equal((await fx.api('GET', `/v1/hosts/local/mdevs/${U3}`)).status, 404, 'plan stores nothing')

  const bad = writeDoc(fx, 'bad.json', { mdevs: [{ uuid: U3, spec: { adapters: [5, 7], domains: [4, 5] } }] })
  const v = await $('plan', '-f', bad)
  t.equal(v.code, 3)
  t.match(v.stdout, /Violations \(\d+\):/)
  t.match(v.stdout, new RegExp(`APQN_IN_USE 05\\.0004 \\(held by ${U1}\\)`))
  t.match(v.stdout, /fix: /)
  const stdin = await cli(fx.url, ['plan', '-f', '-', '--json'], { stdin: JSON.stringify({ mdevs: [{ uuid: U3, spec: { adapters: [5], domains: [4] } }] }) })
  t.equal(stdin.code, 3, 'the document from standard input')
  t.ok(JSON.parse(stdin.stdout).violations.length > 0)
})

t.test('apply: waits until Ready; --no-wait; refused (3); timeout (7) on a state that cannot converge', async (t) => {
  const doc = { owner: 'ops', masks: { apmask: '-7', aqmask: '-5' }, mdevs: [{ uuid: U3, spec: { adapters: [7], domains: [5] } }] }
  const r = await $('apply', '-f', writeDoc(fx, 'a1.json', doc))
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, `${U3}: created (generation 1)`)
  t.match(r.stderr, new RegExp(`${U3}: Ready \\(Active\\)`), 'plain progress lines when stderr is not a terminal')
  t.match(r.stderr, /all 1 device\(s\) converged/)
  // Read right after the command returned: the wait is what made it Ready.
  const dev = (await fx.api('GET', `/v1/hosts/local/mdevs/${U3}`)).body
  t.equal(dev.status.observedGeneration, dev.metadata.generation)
  t.match(
    dev.status.conditions.find((c: any) => c.type === 'Ready'),
    { status: 'True', observedGeneration: dev.metadata.generation },
  )
  t.same(dev.status.matrix, ['07.0005'])

  const grown = {
    ...doc,
    masks: { aqmask: '-5,-10' },
    mdevs: [
      { uuid: U3, spec: { adapters: [7], domains: [5, 10] } },
      { uuid: U5, spec: { adapters: [7], domains: [71] } },
    ],
  }
  const tty = await cli(fx.url, ['apply', '-f', writeDoc(fx, 'a2.json', grown)], { tty: true })
  t.equal(tty.code, 0, tty.stderr)
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the terminal escape is what is tested
  t.match(tty.stderr, /\r\x1b\[Kwaiting: \d\/2 ready/, 'an in-place status line on a terminal')
  t.same((await fx.api('GET', `/v1/hosts/local/mdevs/${U3}`)).body.status.matrix, ['07.0005', '07.000a'])

  const nw = await $('apply', '-f', writeDoc(fx, 'a3.json', grown), '--no-wait', '--json')
  t.equal(nw.code, 0)
  t.equal(JSON.parse(nw.stdout).mdevs[0].action, 'unchanged')
  t.equal(nw.stderr, '', '--no-wait: no waiting')

  const refused = await $('apply', '-f', writeDoc(fx, 'a4.json', { owner: 'ops', mdevs: [{ uuid: U4, spec: { adapters: [5], domains: [4] } }] }))
  t.equal(refused.code, 3)
  t.match(refused.stderr, /APQN_IN_USE/)
  t.equal((await fx.api('GET', `/v1/hosts/local/mdevs/${U3}`)).status, 200, 'refused: nothing deleted')

  // A guest holds U3 open: stopping it waits for the guest (V-29), so Ready cannot come.
  t.equal((await fx.api('POST', '/v1/hosts/local/emulator/guests', { uuid: U3, guest: 'guest-1' })).status < 300, true)
  const stopped = { ...grown, masks: {}, mdevs: [{ uuid: U3, spec: { adapters: [7], domains: [5, 10], state: 'stopped' } }, grown.mdevs[1]] }
  const to = await $('apply', '-f', writeDoc(fx, 'a5.json', stopped), '--timeout', '800ms')
  t.equal(to.code, 7, to.stderr)
  // Each device with its last known state: the Ready one as Ready, the held one with the real cause.
  t.match(to.stderr, /timed out after 800ms waiting for 1 of 2 device\(s\); the last state the server reported:/)
  t.match(to.stderr, new RegExp(`^  ${U5}: Ready \\(Active\\)$`, 'm'), 'the converged device is reported as Ready, not as late')
  t.match(to.stderr, new RegExp(`^  ${U3}: not Ready: WaitingForGuest: `, 'm'))
  t.match(to.stderr, /^ {4}Ready\s+False\s+WaitingForGuest\s+\S/m)
  t.match(to.stderr, /^ {4}Progressing\s+True\s+Reconciling\s+/m)
  t.match(to.stderr, /^ {4}Degraded\s+False\s+Healthy\s+/m)
  t.match(to.stderr, /^ {4}InUseByGuest\s+True\s+GuestAttached\s+open by guest guest-1$/m, 'the guest that holds it')
  t.notMatch(to.stderr, /deadline/, 'no device is reported as unanswered')
  const list = await $('mdev', 'list')
  t.match(
    list.stdout,
    new RegExp(`^${U3}\\s+stopped\\s+Progressing \\(WaitingForGuest\\)\\s+False\\s+InUseByGuest\\s`, 'm'),
    'mdev list: the conditions column',
  )
  t.ok((await fx.api('DELETE', '/v1/hosts/local/emulator/guests/guest-1')).status < 300)
  t.equal((await converged(U3)).status.active, false, 'converges once the guest lets go')

  // The owner's omitted devices are deleted: apply waits until they are gone.
  const del = await $('apply', '-f', writeDoc(fx, 'a6.json', { owner: 'ops', mdevs: [] }))
  t.equal(del.code, 0, del.stderr)
  t.match(del.stdout, `${U3}: deleted`)
  t.equal((await fx.api('GET', `/v1/hosts/local/mdevs/${U3}`)).status, 404)
})

t.test('mdev undefine; define --dry-run stores nothing', async (t) => {
  const r = await $('mdev', 'undefine', U1, '--force', '--wait')
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, 'undefine requested (force)')
  t.equal((await fx.api('GET', `/v1/hosts/local/mdevs/${U1}`)).status, 404, '--wait: gone when the command returns')
  const dry = await $('mdev', 'define', '--uuid', U4, '--adapters', '6', '--domains', '0x47', '--dry-run')
  t.equal(dry.code, 0, dry.stderr)
  t.match(dry.stdout, /createMdev\s+11111111-0000-4000-8000-000000000004/)
  t.equal((await fx.api('GET', `/v1/hosts/local/mdevs/${U4}`)).status, 404)
  t.equal((await $('mdev', 'undefine', U4)).code, 4)
})

t.test('events: the log so far, --json lines, --follow with --since and live', async (t) => {
  const server = await eventsServer(t, fx)
  const $ = (...argv: string[]) => cli(server, argv)
  const r = await $('events')
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /^\s+SEQ\s+TIME\s+HOST\s+TYPE\s+OBJECT\s+MESSAGE$/m)
  t.match(r.stdout, new RegExp(`MdevDefined\\s+mdev/${U1}`))
  const j = await $('events', '--json', '--host', 'local', '--kind', 'mdev')
  t.equal(j.code, 0, j.stderr)
  const events = j.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
  t.ok(events.length > 3)
  t.ok(
    events.every((e, i) => e.kind === 'mdev' && (i === 0 || e.seq > events[i - 1].seq)),
    'only mdev events, seq increasing',
  )
  const typed = await $('events', '--json', '--type', 'MdevDefined')
  const defined = typed.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
  t.ok(defined.length >= 2 && defined.every((e) => e.type === 'MdevDefined'), '--type filters')
  const mid = events[1].seq
  const since = await $('events', '--json', '--since', String(mid), '--follow', '--max-events', '1')
  t.equal(since.code, 0, since.stderr)
  t.ok(JSON.parse(since.stdout).seq > mid, '--since resumes after the given seq')

  // --follow from now: only an event that happens after the stream opened.
  let settled = false
  const live = $('events', '--follow', '--json', '--max-events', '1', '--kind', 'masks').finally(() => (settled = true))
  // The stream opens at some point after the call; keep making events until one arrives after it did.
  for (let i = 0; !settled && i < 50; i++) {
    await new Promise((r) => setTimeout(r, 200))
    if (!settled) t.equal((await fx.api('PUT', '/v1/hosts/local/masks', { apmask: i % 2 ? '-7' : '+7' })).status, 200)
  }
  const got = await live
  t.equal(got.code, 0, got.stderr)
  t.match(JSON.parse(got.stdout), { kind: 'masks', type: 'MasksChanged' })
})

t.test('events --follow resumes after the stream ends, from the last seq printed: no gap, no duplicate', async (t) => {
  // A stand-in for the server's route that ends the first stream the way the real one does when a
  // reader falls behind or the server shuts down (a last `event: error` with resumeSeq).
  const http = await import('node:http')
  const seen: string[] = []
  const ev = (seq: number) =>
    `id: ${seq}\nevent: MdevUpdated\ndata: ${JSON.stringify({ seq, time: 't', host: 'local', kind: 'mdev', name: `m${seq}`, type: 'MdevUpdated' })}\n\n`
  const srv = http.createServer((req, res) => {
    seen.push(req.url ?? '')
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    if (seen.length === 1) res.end(`: hello\n\n${ev(1)}${ev(2)}event: error\ndata: {"code":"UNAVAILABLE","detail":"server shutting down","resumeSeq":2}\n\n`)
    else res.end(ev(3))
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  t.teardown(() => srv.close())
  const r = await cli(`http://127.0.0.1:${(srv.address() as net.AddressInfo).port}`, ['events', '--follow', '--since', '0', '--json', '--max-events', '3'])
  t.equal(r.code, 0, r.stderr)
  t.same(
    r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).seq),
    [1, 2, 3],
  )
  t.match(r.stderr, /server shutting down \[UNAVAILABLE\]; resuming after seq 2/)
  t.same(seen, ['/v1/events?since=0', '/v1/events?since=2'])
})

t.test('a domain the host does not have: the fix says so (V-13); defined anyway, mdev list and get show Degraded', async (t) => {
  // The demo host has usage domains 1, 2, 4, 5, 10 and 71; adapter 0 still belongs to the host (apmask).
  const r = await $('mdev', 'define', '--uuid', U6, '--adapters', '0', '--domains', '3,4')
  t.equal(r.code, 3, r.stderr)
  t.match(r.stderr, /- APQN_RESERVED 00\.0003 \(held by host\): .*; the host does not have domain 3\n/)
  t.match(
    r.stderr,
    `fix: remove domain 3 from ${U6}: the host does not have it; or, to assign it anyway, clear bit 3 in aqmask: -3 (the kernel accepts it, V-13, and filters it out of the guest until the host has it, V-20)`,
  )
  t.equal((await fx.api('GET', `/v1/hosts/local/mdevs/${U6}`)).status, 404, 'refused: nothing stored')

  t.equal((await $('masks', 'set', '--aqmask=-3')).code, 0)
  const d = await $('mdev', 'define', '--uuid', U6, '--adapters', '0', '--domains', '3,4', '--wait')
  t.equal(d.code, 0, d.stderr)
  const dev = (await fx.api('GET', `/v1/hosts/local/mdevs/${U6}`)).body
  t.same(dev.status.matrix, ['00.0003', '00.0004'], 'the kernel holds both (V-13)')
  t.same(dev.status.guestMatrix, ['00.0004'], 'the guest does not get domain 3 (V-20)')
  t.match(
    dev.status.conditions.find((c: any) => c.type === 'Degraded'),
    {
      status: 'True',
      reason: 'NotInHostConfiguration',
      message: /^the host does not have domain 3: the kernel keeps it assigned \(V-13\) and filters it out of the guest \(V-20\)$/,
    },
  )
  t.match(
    dev.status.conditions.find((c: any) => c.type === 'AdapterFiltered'),
    { status: 'False' },
    'adapter 0 reaches the guest',
  )
  const list = await $('mdev', 'list')
  t.match(list.stdout, new RegExp(`^${U6}\\s+started\\s+Degraded \\(NotInHostConfiguration\\)\\s+True\\s+-\\s+0\\s+3,4\\s`, 'm'), list.stdout)
  const get = await $('mdev', 'get', U6)
  t.match(get.stdout, /^ {2}Degraded\s+True\s+NotInHostConfiguration\s/m)
  t.equal((await $('mdev', 'undefine', U6, '--wait')).code, 0)
  t.equal((await $('masks', 'set', '--aqmask=+3')).code, 0)
})

t.test('server unreachable exits 6 (flag and APMATRIX_SERVER)', async (t) => {
  const port = await closedPort()
  const r = await $('inventory', '--server', `http://127.0.0.1:${port}`)
  t.equal(r.code, 6)
  t.match(r.stderr, /cannot reach the apmatrix server at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/)
  const e = await cli(`http://127.0.0.1:${port}`, ['mdev', 'list'])
  t.equal(e.code, 6, 'the address from APMATRIX_SERVER')
  const ev = await cli(`http://127.0.0.1:${port}`, ['events'])
  t.equal(ev.code, 6)

  // A server that accepts the connection and never answers: the request timeout, also exit 6.
  const sockets = new Set<net.Socket>()
  const mute = net.createServer((s) => sockets.add(s))
  await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    mute.close()
  })
  // The server never answers: the command ends only through its timeout.
  const slow = await $('inventory', '--server', `http://127.0.0.1:${(mute.address() as net.AddressInfo).port}`, '--timeout', '300ms')
  t.equal(slow.code, 6)
  t.match(slow.stderr, /no answer from the apmatrix server at \S+ within 300ms/)
})

t.test('exit code of each problem class', async (t) => {
  const p = (status: number, code: string, violations?: unknown[]) =>
    exitCodeOf(new ApiError(status, { status, code, detail: code, ...(violations ? { violations } : {}) } as never))
  t.equal(p(409, 'APQN_RESERVED'), 3)
  t.equal(p(409, 'BUSY'), 3)
  t.equal(p(400, 'OUT_OF_RANGE', [{ rule: 'OUT_OF_RANGE', message: 'x' }]), 3)
  t.equal(p(400, 'INVALID_ARGUMENT'), 1)
  t.equal(p(404, 'NOT_FOUND'), 4)
  t.equal(p(409, 'CONFLICT'), 5)
  t.equal(p(409, 'ALREADY_EXISTS'), 5)
  t.equal(p(503, 'UNAVAILABLE'), 6)
  t.equal(p(500, 'INTERNAL'), 1)
})

t.test('the real binary: bin/apmatrix.mjs against the server', async (t) => {
  const bin = path.join(projectRoot, 'bin', 'apmatrix.mjs')
  const exec = (argv: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const p = spawn(process.execPath, [bin, ...argv], { env: { ...process.env, APMATRIX_SERVER: fx.url } })
      let stdout = ''
      let stderr = ''
      p.stdout.on('data', (d) => (stdout += d))
      p.stderr.on('data', (d) => (stderr += d))
      p.on('close', (code) => resolve({ code, stdout, stderr }))
    })
  const inv = await exec(['inventory', '--json'])
  t.equal(inv.code, 0, inv.stderr)
  t.equal(JSON.parse(inv.stdout).adapters.length, 6)
  const nf = await exec(['mdev', 'get', U4])
  t.equal(nf.code, 4, 'the exit code reaches the shell')
  t.match(nf.stderr, /^apmatrix: .*\[NOT_FOUND\]/)
  t.notMatch(nf.stderr, /\n\s+at /)
})
