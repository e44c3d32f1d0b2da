/**
 * Process entry for node-sysfs-access.test.ts (run under strace): one NodeSysfsAccess write of
 * `value` to the bus port path `path` under `root`. Without arguments it does nothing, so a runner
 * that executes every file of this folder writes nothing.
 */
import { NodeSysfsAccess } from '../../src/bus/node-sysfs-access.js'

const [root, path, value] = process.argv.slice(2)
if (root && path && value !== undefined) await new NodeSysfsAccess({ root, lock: null }).write(path, value)
