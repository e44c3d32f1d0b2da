/**
 * The convergence scenarios with host `local` as on an LPAR: the emulator is mounted as a filesystem
 * (`apmatrix emulator serve --mount`, FUSE) and the service drives that mount with the `sysfs` driver (plain file I/O, as on /sys). Root and the
 * hypervisor act through the emulator's own gRPC face. Needs FUSE: required in CI, a loud skip elsewhere.
 * The first half of the scenarios; convergence-sysfs-2.test.ts runs the second, beside this one.
 */
import t from 'tap'
import { fuseMissing, requireOrSkip } from '../helpers/required-tools.js'
import { scenarios } from './convergence-scenarios.js'

requireOrSkip(t, 'convergence over the FUSE mount, sysfs driver', fuseMissing(), async (t) =>
  scenarios(t, { provider: 'sqlite', url: '' }, 'sysfs', { index: 0, of: 2 }),
)
