/**
 * The systemd units of deploy/systemd: `systemd-analyze verify` accepts them without a single warning
 * (it reports unknown keys and bad values as warnings with exit code 0, so the output must be empty), and
 * they carry the hardening an s390 admin expects. ExecStart= names the installed `apmatrix`, which this
 * machine does not have: the check runs on a copy whose ExecStart= points to a stand-in executable.
 */
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { projectRoot } from '../../src/paths.js'
import { tempDir } from '../bus/sysfs-tree.js'
import { run, withTools } from '../interop/tools.js'

const UNITS = path.join(projectRoot, 'deploy/systemd')

/** `key=value` lines of one section (later lines of a key are appended, as systemd does for lists). */
function section(text: string, name: string): Map<string, string[]> {
  const out = new Map<string, string[]>()
  let current = ''
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const s = /^\[(.+)\]$/.exec(line)
    if (s) {
      current = s[1]!
      continue
    }
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line)
    if (current === name && kv) out.set(kv[1]!, [...(out.get(kv[1]!) ?? []), kv[2]!])
  }
  return out
}

/** A copy of `unit` in `dir` whose ExecStart runs a stand-in `apmatrix`; returns its path. */
function verifiableCopy(t: Test, dir: string, unit: string, edit: (text: string) => string = (x) => x): string {
  const stand = path.join(dir, 'apmatrix')
  fs.writeFileSync(stand, '#!/bin/sh\nexit 0\n', { mode: 0o755 })
  const text = fs.readFileSync(path.join(UNITS, unit), 'utf8')
  t.ok(text.includes('ExecStart=/usr/local/bin/apmatrix '), `${unit}: ExecStart= names the installed apmatrix`)
  const copy = path.join(dir, unit)
  fs.writeFileSync(copy, edit(text.replaceAll('/usr/local/bin/apmatrix', stand)))
  return copy
}

t.test('hardening of apmatrix-agent.service', async (t) => {
  const s = section(fs.readFileSync(path.join(UNITS, 'apmatrix-agent.service'), 'utf8'), 'Service')
  t.same(s.get('ExecStart'), ['/usr/local/bin/apmatrix agent'])
  t.same(s.get('Restart'), ['on-failure'])
  t.same(s.get('StateDirectory'), ['apmatrix-agent'], 'a dedicated state directory')
  for (const [k, v] of [
    ['ProtectSystem', 'strict'],
    ['ProtectHome', 'yes'],
    ['NoNewPrivileges', 'yes'],
    ['PrivateTmp', 'yes'],
    ['ProtectKernelTunables', 'yes'],
    ['User', 'root'],
  ]) {
    t.same(s.get(k!), [v], `${k}=${v}`)
  }
  const rw = (s.get('ReadWritePaths') ?? []).join(' ').split(/\s+/)
  t.same(
    rw.sort(),
    ['/run/lock', '/sys/bus/ap', '/sys/devices/ap', '/sys/devices/vfio_ap'],
    'writable: the AP bus, AP devices, vfio_ap, and the s390-tools lock directory',
  )
  t.same(s.get('CapabilityBoundingSet'), [''], 'no capability: root owns the sysfs attributes')
  t.match(s.get('RestrictAddressFamilies')?.[0], /AF_NETLINK/, 'udevadm monitor needs netlink')
  t.notOk(s.has('PrivatePIDs'), 'the host pid namespace: the s390-tools lock names holders by pid')
})

t.test('hardening of apmatrix.service', async (t) => {
  const s = section(fs.readFileSync(path.join(UNITS, 'apmatrix.service'), 'utf8'), 'Service')
  t.same(s.get('ExecStart'), ['/usr/local/bin/apmatrix serve'])
  t.same(s.get('Restart'), ['on-failure'])
  t.same(s.get('StateDirectory'), ['apmatrix'])
  t.same(s.get('DynamicUser'), ['yes'], 'no root for the service itself')
  for (const [k, v] of [
    ['ProtectSystem', 'strict'],
    ['ProtectHome', 'yes'],
    ['NoNewPrivileges', 'yes'],
    ['PrivateTmp', 'yes'],
  ])
    t.same(s.get(k!), [v], `${k}=${v}`)
  t.same(s.get('Environment'), ['DATABASE_URL=file:/var/lib/apmatrix/apmatrix.db'], 'the SQLite store in the state directory')
})

withTools(t, 'systemd-analyze verify accepts both units without a warning', ['systemd-analyze'], 'systemd', async (t) => {
  const dir = tempDir(t)
  for (const unit of ['apmatrix-agent.service', 'apmatrix.service']) {
    const r = run('systemd-analyze', ['verify', verifiableCopy(t, dir, unit)])
    t.equal(r.status, 0, `${unit}: exit 0`)
    t.equal(`${r.stdout}${r.stderr}`.trim(), '', `${unit}: no warning`)
  }
  // The check can fail: a misspelt key and a bad value are reported.
  const bad = run('systemd-analyze', [
    'verify',
    verifiableCopy(t, dir, 'apmatrix-agent.service', (x) =>
      x.replace('PrivateTmp=yes', 'PrivateTempDir=yes').replace('ProtectSystem=strict', 'ProtectSystem=very'),
    ),
  ])
  t.match(bad.stderr, /Unknown key 'PrivateTempDir'/)
  t.match(bad.stderr, /Failed to parse protect system value/)
})
