// A throw-away writer process for group-commit-crash.test.ts, run from the build in dist/: 16 clients
// create matrix devices through the store (each with its event, in one transaction) and print each uuid
// the moment its transaction was acknowledged, until the test kills the process (SIGKILL).
// Without arguments it does nothing (a runner that executes every file of this folder).
import { createStore } from '../../dist/src/store/store.js'

const [url, prefix] = process.argv.slice(2)
if (!url || !prefix) process.exit(0)
const store = await createStore(url)
const spec = { adapters: [1], domains: [2], controlDomains: [], state: 'started' }
await Promise.all(
  Array.from({ length: 16 }, async (_, k) => {
    for (let i = 0; ; i++) {
      const uuid = `${prefix}${k.toString(16).padStart(2, '0')}-${i.toString(16).padStart(12, '0')}`
      await new Promise((r) => setImmediate(r))
      await store.transaction(async (tx) => {
        await tx.mdevs.create({ host: 'local', uuid, spec })
        await tx.events.append({ host: 'local', kind: 'mdev', name: uuid, type: 'MdevDefined' })
      })
      // A pipe write is synchronous on Linux: once this returns, the test will read the line.
      process.stdout.write(`${uuid}\n`)
    }
  }),
)
