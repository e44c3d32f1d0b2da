/**
 * The README's FUSE section runs as written (the `<!-- walkthrough: fuse -->` blocks, as one bash script):
 * as root, with FUSE, `unshare -m` and mdevctl (required in CI). Its own file, so that it runs beside the
 * walk-through of readme.test.ts rather than after it.
 */
import fs from 'node:fs'
import t from 'tap'
import { freePort } from '../emulator-remote/helpers.js'
import { scratchDir } from '../emulator/fuse/mounted-emulator.js'
import { fuseMissing, requireOrSkip, which } from '../helpers/required-tools.js'
import { FUSE, runBash, script } from './readme-script.js'

function fuseSectionMissing(): string | undefined {
  return (
    fuseMissing({ namespaces: true }) ??
    (which('mdevctl') ? undefined : "mdevctl not found: install Debian package 'mdevctl'") ??
    (which('curl') ? undefined : "curl not found: install Debian package 'curl'")
  )
}

requireOrSkip(t, 'the FUSE section runs as written (root, FUSE, unshare, mdevctl)', fuseSectionMissing(), async (t) => {
  const scratch = scratchDir(t)
  const port = await freePort()
  const r = await runBash(
    t,
    script(FUSE),
    {
      LPAR_DIR: scratch,
      APMATRIX_SERVER: `http://127.0.0.1:${port}`,
      APMATRIX_HTTP_ADDR: `127.0.0.1:${port}`,
      APMATRIX_GRPC_ADDR: `127.0.0.1:${await freePort()}`,
      DATABASE_URL: `file:${scratch}/apmatrix.db`,
      APMATRIX_LOG_LEVEL: 'warn',
    },
    120_000,
  )
  t.comment(`README blocks: ${r.blocks.join(', ')}`)
  t.equal(r.code, 0, 'the script exits 0', { timedOut: r.timedOut, blocks: r.blocks, stderr: r.stderr.slice(-3000), stdout: r.stdout.slice(-3000) })
  const out = r.stdout
  t.match(out, `0x${'f'.repeat(64)}\n`, 'cat apmask: the kernel default')
  t.match(out, "the kernel's answer: EINVAL, not a UUID")
  t.match(r.stderr, /Invalid argument/, "the shell's own message for EINVAL")
  t.match(out, /^matrix\n {2}vfio_ap-passthrough\n/m, 'mdevctl types')
  t.match(
    out,
    /^11111111-2222-4333-8444-555555555555 matrix vfio_ap-passthrough auto \(defined\)$/m,
    'mdevctl list: started, and defined to start automatically',
  )
  t.match(out, /"uuid":"11111111-2222-4333-8444-555555555555","managed":false/, "mdevctl's device, foreign to apmatrix")
  t.match(out, /"uuid":"11111111-2222-4333-8444-555555555555","managed":true/, 'adopted by the import')
  t.match(out, /"apmask":"0xf9f{62}"/, 'the masks apmatrix found and adopted')
  t.notOk(fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${scratch}/sys `), 'the emulator unmounted at SIGTERM')
})
