/**
 * README.md runs as written. Every fenced `sh` block carries a marker comment on the line before it:
 * `<!-- walkthrough -->` blocks run in order as one bash script under `set -euo pipefail` against a real
 * `apmatrix serve` (started here as `npm start` starts it, on a free port, with a fresh database);
 * `<!-- walkthrough: fuse -->` blocks run as a second script (readme-fuse.test.ts, a file of its own so
 * that the two run side by side); `<!-- not run by the README test: why -->` says why a block cannot
 * run here. The scripts' outcomes are checked in their output and in the service's state; every path of
 * the repository that the README names must exist. Needs the build (bin/apmatrix.mjs runs dist/).
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { projectRoot } from '../../src/paths.js'
import { freePort } from '../emulator-remote/helpers.js'
import { requireOrSkip, which } from '../helpers/required-tools.js'
import { run, withTools } from '../interop/tools.js'
import { readyLine, spawnCli } from '../reliability/cli-process.js'
import { blocks, FUSE, NOT_RUN, README, runBash, script, WALKTHROUGH } from './readme-script.js'

t.test('every shell block is run by this test or says why it cannot be', async (t) => {
  t.ok(blocks.length >= 10, `${blocks.length} blocks`)
  for (const b of blocks) {
    const ok = b.marker === WALKTHROUGH || b.marker === FUSE || NOT_RUN.test(b.marker ?? '')
    t.ok(ok, `README.md:${b.line}: marker ${JSON.stringify(b.marker)}`)
    if (b.marker && NOT_RUN.test(b.marker)) t.comment(`README.md:${b.line} not run: ${b.marker.replace(NOT_RUN, (m) => m.slice(-1))}`)
  }
  t.ok(blocks.filter((b) => b.marker === WALKTHROUGH).length >= 6)
  t.ok(blocks.some((b) => b.marker === FUSE))
  // No shell command hides in an indented block (the layout listing is the one indented block).
  t.same(README.match(/^ {4}(curl|npx|npm|\.\/bin|apmatrix|mdevctl|unshare) /gm) ?? [], [], 'commands are in marked fences')
  const pkg = JSON.parse(fs.readFileSync(path.join(projectRoot, 'package.json'), 'utf8'))
  t.equal(pkg.scripts.start, 'node bin/apmatrix.mjs serve', 'npm start is what this test starts')
})

t.test('every path of the repository the README names exists', async (t) => {
  const named = new Set<string>()
  for (const m of README.matchAll(/(?<![\w/.$-])((?:src|docs|examples|test|deploy|proto|bin|bench|prisma|scripts|\.ci)\/[\w./-]*[\w/])/g)) named.add(m[1]!)
  t.ok(named.size >= 15, [...named].join(' '))
  for (const p of named) t.ok(fs.existsSync(path.join(projectRoot, p)), p)
})

withTools(
  t,
  "the example node-device XML is valid for libvirt's nodedev schema",
  ['virt-xml-validate', 'xmllint'],
  'libvirt-clients libxml2-utils',
  async (t) => {
    const good = run('virt-xml-validate', [path.join(projectRoot, 'examples/mdev-nodedev.xml'), 'nodedev'])
    t.equal(good.status, 0, `${good.stdout}${good.stderr}`)
    // The negative twin: the validator does refuse a broken document.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-readme-xml-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const broken = path.join(dir, 'broken.xml')
    fs.writeFileSync(
      broken,
      fs.readFileSync(path.join(projectRoot, 'examples/mdev-nodedev.xml'), 'utf8').replace("<capability type='mdev'>", "<capability type='mdev' bogus='1'>"),
    )
    t.not(run('virt-xml-validate', [broken, 'nodedev']).status, 0)
  },
)

async function api(base: string, p: string): Promise<{ status: number; body: any }> {
  const res = await fetch(base + p)
  const text = await res.text()
  return { status: res.status, body: text ? JSON.parse(text) : undefined }
}

const ready = (m: any) => m.status.conditions?.find((c: any) => c.type === 'Ready')

requireOrSkip(
  t,
  'the walk-through runs as a script against a real apmatrix serve',
  which('curl') ? undefined : "curl not found: install Debian package 'curl'",
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-readme-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const svc = spawnCli(t, ['serve'], {
      DATABASE_URL: `file:${dir}/apmatrix.db`,
      APMATRIX_HTTP_ADDR: '127.0.0.1:0',
      APMATRIX_GRPC_ADDR: '127.0.0.1:0',
      APMATRIX_LOG_LEVEL: 'warn',
    })
    const m = await readyLine(svc, /^apmatrix serving REST on (http:\/\/\S+)$/, 'the service ready line')
    if (!m) throw new Error(`the service did not start: ${svc.stderr.join('\n')}`)
    const S = m[1]!
    const r = await runBash(
      t,
      script(WALKTHROUGH),
      {
        APMATRIX_SERVER: S,
        EMULATOR_ADDR: `127.0.0.1:${await freePort()}`,
        SECOND_HTTP_ADDR: `127.0.0.1:${await freePort()}`,
        SECOND_GRPC_ADDR: `127.0.0.1:${await freePort()}`,
        SECURE_HTTP_ADDR: `127.0.0.1:${await freePort()}`,
        SECURE_GRPC_ADDR: `127.0.0.1:${await freePort()}`,
      },
      240_000,
    )
    t.comment(`README blocks: ${r.blocks.join(', ')}`)
    t.equal(r.code, 0, 'the script exits 0', { timedOut: r.timedOut, blocks: r.blocks, stderr: r.stderr.slice(-3000), stdout: r.stdout.slice(-3000) })
    const out = r.stdout

    // The curl walk-through.
    t.match(out, /"matrix":\["05\.0004","06\.0004"\],"guestMatrix":\["05\.0004","06\.0004"\]/, 'the device Ready with its guest matrix')
    const queue = /"apqn":"00\.0004".*?"requestCount":(\d+)/.exec(out)
    t.ok(queue && Number(queue[1]) > 0, `the workload reached its queue (requestCount ${queue?.[1]})`)
    t.match(out, /^event: MdevDefined$/m)
    t.match(out, /^event: DriftDetected$/m, "root's write was seen as drift")
    // Interop.
    t.match(out, /"origin":"imported"/)
    t.match(out, /"mdev_type": "vfio_ap-passthrough"/, 'the mdevctl export')
    t.match(out, /<uuid>7d3c2b1a-0f9e-4d8c-b7a6-5e4d3c2b1a0f<\/uuid>/, 'the node-device export')
    t.match(out, /<hostdev mode='subsystem' type='mdev' model='vfio-ap'>/, 'the hostdev export')
    // The command line.
    t.match(out, /^apmatrix \d+\.\d+\.\d+$/m, 'npx apmatrix runs the command line')
    t.match(out, /^Violations: none$/m, 'plan of the example desired state')
    t.match(r.stderr, /all 2 device\(s\) converged in /, 'apply waited for both devices')
    t.match(out, /^Usage: apmatrix mdev <command>/m)
    // The emulator on its own.
    t.match(out, `{"ok":true,"value":"0x${'f'.repeat(64)}\\n"}`)
    t.match(out, /"driver":"remote-emulator"/, 'the second service manages the emulator process')
    // The secured setup.
    t.match(r.stderr, /authentication required/, 'no token: UNAUTHENTICATED')
    t.match(out, /^subject: ci-bot\nauthenticated by: token\nroles: operator$/m, 'whoami with the token')
    t.match(r.stderr, /may not update masks/, 'an operator may not set masks')
    // Configuration.
    t.match(r.stderr, /^apmatrix: APMATRIX_PROFILE \/ --profile: profile 'nonexistent' is neither/m)
    t.match(out, /exit code 2$/m)
    t.match(r.stderr, /warning: APMATRIX_PROFLE .*\(did you mean APMATRIX_PROFILE\?\)/)

    // What the walk-through left in the service.
    const B = `${S}/v1/hosts/local`
    t.equal((await api(B, '/mdevs/4b0e8bd4-2a4b-4d36-9d43-5c2a3c8e1a01')).status, 404, 'the walk-through device was deleted')
    const nodedev = (await api(B, '/mdevs/7d3c2b1a-0f9e-4d8c-b7a6-5e4d3c2b1a0f')).body
    t.match(ready(nodedev), { status: 'True', reason: 'Active' })
    t.same(nodedev.status.matrix, ['06.000a'])
    t.match(
      ready((await api(B, '/mdevs/2c9e1b7a-5d3f-4e8a-9b6c-1d2e3f4a5b6c')).body),
      { status: 'True', reason: 'Stopped' },
      'the mdevctl import: start manual',
    )
    const example = (await api(B, '/mdevs/e1a5e2f0-7a1b-4c2d-8e3f-000000000001')).body
    t.match(ready(example), { status: 'True', reason: 'Active' })
    t.same(example.status.matrix, ['07.0001', '07.0002'])
    t.same(example.metadata.labels, { guest: 'vm2' })
    const masks = (await api(B, '/masks')).body
    t.notOk(
      [5, 6, 7].some((id) => masks.spec.apmaskIds.includes(id)),
      'adapters 5, 6, 7 belong to vfio_ap',
    )
    t.equal(masks.status.apmask, masks.spec.apmask, 'and the bus agrees')
  },
)
