/**
 * Settings from the environment, through the real `apmatrix` process (bin/apmatrix.mjs; `npm run build`
 * first): a bad APMATRIX_PROFILE stops `serve` with exit 2 naming the setting (README (Configuration)), and
 * an APMATRIX_* variable apmatrix does not read is warned about with the closest known name.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { loadConfig } from '../../src/config.js'
import { closestKnownVariable, KNOWN_VARIABLES, unknownVariableWarnings } from '../../src/cli/environment.js'
import { projectRoot } from '../../src/paths.js'

const BIN = path.join(projectRoot, 'bin', 'apmatrix.mjs')

function apmatrix(argv: string[], env: NodeJS.ProcessEnv) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-env-'))
  try {
    // Free ports and a scratch database, in case a mistake let the service start after all.
    const base = {
      PATH: process.env.PATH ?? '',
      APMATRIX_HTTP_ADDR: '127.0.0.1:0',
      APMATRIX_GRPC_ADDR: '127.0.0.1:0',
      DATABASE_URL: `file:${dir}/db.sqlite`,
    }
    const r = spawnSync(process.execPath, [BIN, ...argv], { encoding: 'utf8', env: { ...base, ...env }, timeout: 30_000, cwd: dir })
    return { code: r.status, stdout: r.stdout, stderr: r.stderr, dbCreated: fs.existsSync(path.join(dir, 'db.sqlite')) }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

t.test('APMATRIX_PROFILE=nonexistent: serve exits 2 at once, naming the setting and what it accepts', async (t) => {
  const r = apmatrix(['serve'], { APMATRIX_PROFILE: 'nonexistent' })
  t.equal(r.code, 2, r.stderr)
  t.match(r.stderr, /^apmatrix: APMATRIX_PROFILE \/ --profile: profile 'nonexistent' is neither a builtin \(spec-fixture, demo, full\) nor a readable file\n/)
  t.match(r.stderr, "Run 'apmatrix serve --help' for usage.")
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace')
  t.notOk(r.dbCreated, 'nothing was started')
  const flag = apmatrix(['serve', '--profile', 'nonexistent'], {})
  t.equal(flag.code, 2)
  t.match(flag.stderr, /APMATRIX_PROFILE \/ --profile: profile 'nonexistent'/)
  const hosts = apmatrix(['serve'], { APMATRIX_HOSTS: 'a=demo,b=nonexistent' })
  t.equal(hosts.code, 2)
  t.match(hosts.stderr, /^apmatrix: APMATRIX_HOSTS \/ --hosts: host b: profile 'nonexistent' is neither/)
})

t.test('a profile file that is not a valid profile: exit 2 naming the setting and the field', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'apmatrix-profile-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'p.json')
  fs.writeFileSync(file, '{"name":"x","adapters":[],"bogus":1}')
  const r = apmatrix(['serve'], { APMATRIX_PROFILE: file })
  t.equal(r.code, 2, r.stderr)
  t.match(r.stderr, new RegExp(`^apmatrix: APMATRIX_PROFILE / --profile: ${file}: bogus: unknown field`))
  t.throws(() => loadConfig({}, { APMATRIX_PROFILE: file }), /bogus: unknown field/, 'loadConfig itself refuses it')
  t.equal(loadConfig({}, { APMATRIX_PROFILE: file, APMATRIX_EMULATOR_ADDR: '127.0.0.1:1' }).hosts[0]!.kind, 'remote', 'an unused profile is not read')
})

t.test('an APMATRIX_* variable apmatrix does not read: every verb warns, naming the closest known one, and goes on', async (t) => {
  const r = apmatrix(['--version'], { APMATRIX_PROFLE: 'full', APMATRIX_SERVR: 'http://x', APMATRIX_SOMETHING_ELSE: '1', APMATRIX_REQUIRE_TOOLS: '1' })
  t.equal(r.code, 0, 'a warning, not an error')
  t.match(r.stdout, /^apmatrix \d+\.\d+\.\d+/)
  t.equal(
    r.stderr,
    'apmatrix: warning: APMATRIX_PROFLE is not a setting apmatrix reads; it is ignored (did you mean APMATRIX_PROFILE?)\n' +
      'apmatrix: warning: APMATRIX_SERVR is not a setting apmatrix reads; it is ignored (did you mean APMATRIX_SERVER?)\n' +
      'apmatrix: warning: APMATRIX_SOMETHING_ELSE is not a setting apmatrix reads; it is ignored\n',
    'sorted by name; no guess when nothing is close; the test harness variables are known',
  )
  const serve = apmatrix(['serve'], { APMATRIX_PORFILE: 'full', APMATRIX_PROFILE: 'nonexistent' })
  t.match(serve.stderr, /warning: APMATRIX_PORFILE .*did you mean APMATRIX_PROFILE\?/, 'before the settings are read')
  t.equal(serve.code, 2)
})

t.test('known names and the closest match', async (t) => {
  for (const name of ['APMATRIX_PROFILE', 'APMATRIX_SERVER', 'APMATRIX_AGENT_ADDR', 'APMATRIX_DEBUG', 'APMATRIX_CRASH_SEED'])
    t.ok(KNOWN_VARIABLES.includes(name), name)
  t.notOk(
    KNOWN_VARIABLES.some((n) => !n.startsWith('APMATRIX_')),
    'only APMATRIX_* names are checked (DATABASE_URL is not ours alone)',
  )
  t.equal(closestKnownVariable('APMATRIX_HTTP_ADR'), 'APMATRIX_HTTP_ADDR')
  t.equal(closestKnownVariable('APMATRIX_DRAIN_TIMEOUT'), 'APMATRIX_DRAIN_TIMEOUT_MS')
  t.equal(closestKnownVariable('APMATRIX_AGENT_SYSFSROOT'), 'APMATRIX_AGENT_SYSFS_ROOT')
  t.equal(closestKnownVariable('APMATRIX_COLOR'), undefined)
  t.same(unknownVariableWarnings({ APMATRIX_BENCH_PHASES: 'get', HOME: '/', APMATRIX_SERVER: 'x' }), [], 'bench knobs and other variables pass')
})
