/**
 * `apmatrix inventory` as lszcrypt users read it (issue 10 §4) against the real service in-process (SQLite, the
 * real reconciler, emulated hosts `local` = demo and `sf` = spec-fixture): the default and `--queues` tables, the
 * lszcrypt -V columns, the `--domains` grid checked cell by cell against the API's answer for every APQN, and the
 * STATUS summary of `mdev list`.
 */
import t, { type Test } from 'tap'
import { cli, startServer, type ServerFixture } from './cli-fixture.js'

const U1 = '22222222-0000-4000-8000-000000000001'
const U2 = '22222222-0000-4000-8000-000000000002'

let fx: ServerFixture
const $ = (...argv: string[]) => cli(fx.url, argv)

/** Polls `probe` until it returns a value (not undefined), or fails after `ms`. */
async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await probe()
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Every API answer the grid is drawn from, for host `h`. */
async function apiState(h: string): Promise<any> {
  const base = `/v1/hosts/${h}`
  const get = async (p: string) => (await fx.api('GET', base + p)).body
  const queues: any[] = []
  let token: string | undefined
  do {
    const page = await get(`/queues?limit=500${token ? `&pageToken=${token}` : ''}`)
    queues.push(...page.items)
    token = page.nextPageToken
  } while (token)
  return {
    adapters: (await get('/adapters')).items,
    queues,
    domains: await get('/domains'),
    masks: (await get('/masks')).status,
    mdevs: (await get('/mdevs')).items,
    host: await get(''),
  }
}

/** The part of {@link apiState} a grid shows (no timestamps, no counters). */
function drawn(s: any): unknown {
  return {
    adapters: s.adapters.map((a: any) => [a.apid, a.config, a.chkstop, a.online]),
    queues: s.queues.map((q: any) => [q.apqn, q.driver, q.config, q.chkstop, q.online, q.owner]),
    domains: s.domains,
    masks: [s.masks.apmaskIds, s.masks.aqmaskIds],
    mdevs: s.mdevs.map((m: any) => [
      m.metadata.uuid,
      m.spec,
      m.status.active,
      m.status.matrix,
      m.status.guestMatrix,
      m.status.guest,
      m.status.controlDomains,
      (m.status.conditions ?? []).map((c: any) => [c.type, c.status, c.reason]),
    ]),
  }
}

/** The grid text as cells: `cells.get('05.0004')` is the two characters printed for that APQN. */
function parseGrid(text: string): { cells: Map<string, string>; apids: Set<number>; apqis: Set<number> } {
  const cells = new Map<string, string>()
  const apids = new Set<number>()
  const apqis = new Set<number>()
  let cols: number[] = []
  for (const line of text.split('\n')) {
    if (line.startsWith('CARD  ')) {
      cols = line
        .slice(6)
        .split(' ')
        .map((h) => Number.parseInt(h, 16))
      continue
    }
    if (line.startsWith('----')) break
    const m = /^([0-9a-f]{2}) {4}/.exec(line)
    if (!m || cols.length === 0) continue
    const apid = Number.parseInt(m[1]!, 16)
    apids.add(apid)
    const padded = line.padEnd(6 + 3 * cols.length, ' ')
    cols.forEach((apqi, i) => {
      apqis.add(apqi)
      cells.set(`${m[1]}.${apqi.toString(16).padStart(4, '0')}`, padded.slice(6 + 3 * i, 8 + 3 * i))
    })
  }
  return { cells, apids, apqis }
}

/**
 * What the API says each APQN is, written out from the API's answer (not from the CLI's code): the owner symbol
 * (a device's letter in uuid order, `#` inside the observed masks, `-` outside, `.` no queue) and the mark.
 */
function expectedCell(s: any, apqn: string): string {
  const q = s.queues.find((x: any) => x.apqn === apqn)
  const filteredByKernel = (m: any) => m.status.active && m.status.matrix?.includes(apqn) && !m.status.guestMatrix?.includes(apqn)
  if (!q) return s.mdevs.some(filteredByKernel) ? '.~' : '. '
  const uuids = [...new Set([...s.mdevs.map((m: any) => m.metadata.uuid), ...s.queues.filter((x: any) => x.owner).map((x: any) => x.owner)])].sort()
  const owner = q.owner
    ? 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'[uuids.indexOf(q.owner)]
    : s.masks.apmaskIds.includes(q.apid) && s.masks.aqmaskIds.includes(q.apqi)
      ? '#'
      : '-'
  const card = s.adapters.find((a: any) => a.apid === q.apid)
  const dev = s.mdevs.find((m: any) => m.metadata.uuid === q.owner)
  let mark = ' '
  if (!q.config || q.chkstop || q.online === false || !card.config || card.chkstop || card.online === false) mark = '!'
  else if (dev && filteredByKernel(dev)) mark = '~'
  else if (q.driver === 'none') mark = '?'
  else if (dev?.status.guest && dev.status.guestMatrix.includes(apqn)) mark = '*'
  return owner + mark
}

/**
 * Runs `inventory --domains` between two reads of the API and retries until both reads agree (the reconciler
 * may still be writing status), then checks every APQN of every adapter x domain the API names.
 */
async function checkGrid(t: Test, h: string): Promise<Map<string, string>> {
  const { grid, s } = await until(`a settled grid of ${h}`, async () => {
    const before = await apiState(h)
    const r = await $('inventory', '--domains', '--host', h)
    const after = await apiState(h)
    t.equal(r.code, 0, r.stderr)
    return JSON.stringify(drawn(before)) === JSON.stringify(drawn(after)) ? { grid: r.stdout, s: after } : undefined
  })
  const parsed = parseGrid(grid)
  const apids = new Set<number>([...s.adapters.map((a: any) => a.apid), ...s.mdevs.flatMap((m: any) => m.spec.adapters)])
  const apqis = new Set<number>([...s.domains.usageDomains, ...s.domains.controlDomains, ...s.mdevs.flatMap((m: any) => m.spec.domains)])
  t.same(
    [...parsed.apids].sort((a, b) => a - b),
    [...apids].sort((a, b) => a - b),
    `${h}: one row per adapter`,
  )
  for (const d of apqis) t.ok(parsed.apqis.has(d), `${h}: domain ${d} has a column`)
  let n = 0
  for (const apid of apids)
    for (const apqi of apqis) {
      const apqn = `${apid.toString(16).padStart(2, '0')}.${apqi.toString(16).padStart(4, '0')}`
      if (parsed.cells.get(apqn) !== expectedCell(s, apqn)) t.fail(`${h} ${apqn}: grid '${parsed.cells.get(apqn)}', API says '${expectedCell(s, apqn)}'`)
      else n++
    }
  t.equal(n, apids.size * apqis.size, `${h}: all ${n} cells match the API`)
  return parsed.cells
}

t.before(async () => {
  fx = await startServer(t, { hosts: 'local=demo,sf=spec-fixture' })
})

t.test('help lists the new flags', async (t) => {
  const r = await $('inventory', '--help')
  t.equal(r.code, 0)
  for (const flag of ['--queues', '-V, --verbose', '-d, --domains', 'PENDING', 'HWTYPE', 'QDEPTH', 'FUNCTIONS']) t.match(r.stdout, flag)
  t.match((await $('mdev', 'list', '--help')).stdout, /STATUS/)
  const both = await $('inventory', '--domains', '-V')
  t.equal(both.code, 2, 'the grid takes no table options')
})

t.test('default and --queues: cards, then queues under their card, as the help says', async (t) => {
  const r = await $('inventory')
  t.equal(r.code, 0, r.stderr)
  const lines = r.stdout.trimEnd().split('\n')
  t.match(lines[0], /^CARD\.DOMAIN\s+TYPE\s+MODE\s+STATUS\s+REQUESTS\s+DRIVER\s+OWNER$/)
  t.same(
    lines.slice(1).map((l) => l.split(/\s+/)[0]),
    ['00', '01', '02', '05', '06', '07'],
    'only cards without --queues',
  )
  const q = await $('inventory', '--queues')
  const ids = q.stdout
    .trimEnd()
    .split('\n')
    .slice(1)
    .map((l) => l.split(/\s+/)[0])
  t.equal(ids.length, 6 + 36, 'six cards and their 36 queues')
  t.equal(ids.indexOf('05.0001'), ids.indexOf('05') + 1, 'a card is followed by its queues')
  t.match(q.stdout, /^05\.0004\s+CEX8C\s+CCA-Coproc\s+online\s+\d+\s+cex4queue\s+-$/m)
})

t.test('a configuration drawn: devices, a guest, a filtered APQN, a checkstop; -V; mdev list STATUS', async (t) => {
  t.equal((await $('masks', 'set', '--apmask=-5,-6,-7', '--aqmask=-3,-4,-5,-71')).code, 0)
  const d1 = await $('mdev', 'define', '--uuid', U1, '--adapters', '5,6', '--domains', '4', '--control-domains', '4', '--wait')
  t.equal(d1.code, 0, d1.stderr)
  // Domain 3 is not on the host: the kernel keeps 07.0003 assigned (V-13) and the guest does not get it (V-20).
  const d2 = await $('mdev', 'define', '--uuid', U2, '--adapters', '7', '--domains', '3,5', '--wait')
  t.equal(d2.code, 0, d2.stderr)
  t.ok((await fx.api('POST', '/v1/hosts/local/emulator/guests', { uuid: U1, guest: 'vm1' })).status < 300)
  t.ok((await fx.api('POST', '/v1/hosts/local/emulator/hardware', { action: 'checkstop', apid: 6, apqi: 5 })).status < 300)
  await until('vm1 on U1 and 06.0005 checkstopped', async () => {
    const dev = (await fx.api('GET', `/v1/hosts/local/mdevs/${U1}`)).body
    const q = (await fx.api('GET', '/v1/hosts/local/queues?adapter=6&domain=5')).body.items[0]
    return dev.status.guest === 'vm1' && q?.chkstop ? true : undefined
  })

  const cells = await checkGrid(t, 'local')
  // The picture the scenario made, spelled out.
  t.equal(cells.get('05.0004'), 'A*', 'U1 in guest vm1')
  t.equal(cells.get('06.0004'), 'A*')
  t.equal(cells.get('07.0005'), 'B ', 'U2, no guest')
  t.equal(cells.get('07.0003'), '.~', 'in U2 matrix, no such queue, filtered from its guest')
  t.equal(cells.get('06.0005'), '-!', 'free for vfio_ap, checkstopped')
  t.equal(cells.get('00.0001'), '# ', 'the host default drivers')
  t.equal(cells.get('05.0001'), '- ', 'free for vfio_ap')
  t.equal(cells.get('00.000b'), '. ', 'control domain 11: no queue')
  const grid = (await $('inventory', '--domains')).stdout
  t.match(grid, /^CARD {2}00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f$/m, '16 hex domains per block, like lszcrypt -d')
  t.match(grid, /^U\/C\/B \. {2}B {2}B {2}\. {2}B {2}B {2}\. {2}\. {2}\. {2}\. {2}B {2}C/m, 'usage and control domains of the host')
  t.match(grid, new RegExp(`^ {2}A {2}${U1} {2}started {2}Ready {2}guest vm1 {2}control 4$`, 'm'))
  t.match(grid, new RegExp(`^ {2}B {2}${U2} {2}started {2}Degraded \\(NotInHostConfiguration\\) {2}guest - {2}control -$`, 'm'))
  t.match(grid, /^ {2}~ {2}filtered from the guest/m, 'the legend')
  const json = JSON.parse((await $('inventory', '--domains', '--json')).stdout)
  t.same(
    json.mdevs.map((m: any) => m.metadata.uuid),
    [U1, U2],
  )
  t.ok(json.masks.status.apmaskIds.length > 0 && json.queues.length === 36 && json.hostInfo.features.includes('guest_matrix'), '--json: the API answers')

  // -V: lszcrypt -V's columns, from the API's adapter and queue views.
  const v = await $('inventory', '-V', '--queues')
  t.equal(v.code, 0, v.stderr)
  t.match(v.stdout, /^CARD\.DOMAIN\s+TYPE\s+MODE\s+STATUS\s+REQUESTS\s+PENDING\s+HWTYPE\s+QDEPTH\s+FUNCTIONS\s+DRIVER\s+OWNER$/m)
  const s = await apiState('local')
  const letters = { APSC: 'S', MEX4K: 'M', CRT4K: 'C', COPRO: 'D', ACCEL: 'A', EP11: 'X', APXA: 'N', SLCF: 'H' } as Record<string, string>
  for (const a of s.adapters) {
    const fns = Object.keys(letters)
      .map((k) => (a.functions.includes(k) ? letters[k] : '-'))
      .join('')
    const id = a.apid.toString(16).padStart(2, '0')
    const row = v.stdout.split('\n').find((l) => l.startsWith(`${id} `))
    t.match(
      row,
      new RegExp(`^${id}\\s+${a.type}\\s+\\S+\\s+online\\s+\\d+\\s+\\d+\\s+${a.hwtype}\\s+${String(a.depth).padStart(2, '0')}\\s+${fns}\\s+cex4card\\s+-$`),
      `card ${id}`,
    )
  }
  t.match(v.stdout, /^05\s+CEX8C\s+CCA-Coproc\s+online\s+\d+\s+\d+\s+14\s+08\s+SMCD--N-\s+cex4card\s+-$/m, 'a CEX8C: hwtype 14, depth 8')
  t.match(
    v.stdout,
    new RegExp(`^05\\.0004\\s+CEX8C\\s+CCA-Coproc\\s+in use\\s+\\d+\\s+\\d+\\s+14\\s+08\\s+SMCD--N-\\s+vfio_ap\\s+${U1}$`, 'm'),
    'vfio_ap status',
  )
  t.match(v.stdout, /^06\.0005\s+CEX8A\s+Accelerator\s+chkstop\s/m)
  t.match(v.stdout, /^07\.0005\s+CEX8P\s+EP11-Coproc\s+assigned\s/m)

  // mdev list: the condition summary.
  const l = await $('mdev', 'list')
  t.match(l.stdout, /^UUID\s+STATE\s+STATUS\s+READY\s+CONDITIONS\s+ADAPTERS\s+DOMAINS\s+CONTROL\s+GEN\s+OWNER$/m)
  t.match(l.stdout, new RegExp(`^${U1}\\s+started\\s+Ready\\s+True\\s+InUseByGuest\\s+5,6\\s+4\\s+4\\s`, 'm'), l.stdout)
  t.match(l.stdout, new RegExp(`^${U2}\\s+started\\s+Degraded \\(NotInHostConfiguration\\)\\s+True\\s+-\\s+7\\s+3,5\\s+-\\s`, 'm'), l.stdout)
})

t.test('spec-fixture host, observed only: an unbound queue and the grid against the API', async (t) => {
  // Nothing desired on `sf`: the reconciler observes it and writes nothing, so a manual unbind stays.
  const w = await fx.api('POST', '/v1/hosts/sf/emulator/sysfs', { path: '/sys/bus/ap/drivers/cex4queue/unbind', value: '05.0004\n' })
  t.ok(w.status < 300, JSON.stringify(w.body))
  await until('05.0004 unbound', async () =>
    (await fx.api('GET', '/v1/hosts/sf/queues?adapter=5&domain=4')).body.items[0]?.driver === 'none' ? true : undefined,
  )
  const cells = await checkGrid(t, 'sf')
  t.equal(cells.get('05.0004'), '#?', 'unbound, inside the masks')
  t.equal(cells.get('07.00ff'), '# ')
  const grid = (await $('inventory', '--domains', '--host', 'sf')).stdout
  t.match(grid, /^CARD {2}f0 f1 .* ff$/m, 'domain 0xff in the last block')
  t.notMatch(grid, /^CARD {2}10 /m, 'blocks without a domain of the host are left out')
  t.match(grid, /No matrix devices\.\n$/)
  const q = await $('inventory', '--host', 'sf', '--queues')
  t.match(q.stdout, /^05\.0004\s+CEX8C\s+CCA-Coproc\s+-\s+-\s+-no-driver-\s+-$/m, 'lszcrypt: - and -no-driver- for an unbound queue')
})
