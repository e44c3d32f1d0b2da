/**
 * The convergence scenarios with host `local` as on an LPAR: the emulator is mounted as a filesystem
 * (`apmatrix emulator serve --mount`, FUSE) and an `apmatrix agent` serves that mount to the service over the host bus. Root and the
 * hypervisor act through the emulator's own gRPC face. Needs FUSE: required in CI, a loud skip elsewhere.
 * The second half of the scenarios (convergence-agent.test.ts runs the first).
 */
import t from 'tap'
import { fuseMissing, requireOrSkip } from '../helpers/required-tools.js'
import { scenarios } from './convergence-scenarios.js'

requireOrSkip(t, 'convergence over the FUSE mount, agent driver', fuseMissing(), async (t) =>
  scenarios(t, { provider: 'sqlite', url: '' }, 'agent', { index: 1, of: 2 }),
)
