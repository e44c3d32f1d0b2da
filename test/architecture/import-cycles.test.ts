/**
 * No import cycle in src/ (type-only imports included: a cycle of types is still two modules that
 * cannot be understood apart). A small walk over the import graph of the TypeScript sources: every
 * `import ... from`, `export ... from` and `import('...')` of a relative module, resolved from `.js`
 * to the `.ts` file. Generated code (src/generated) is left out. On failure the test names each cycle.
 */
import path from 'node:path'
import t from 'tap'
import { projectRoot } from '../../src/paths.js'
import { findCycles, importGraph } from '../helpers/import-graph.js'

const SRC = path.join(projectRoot, 'src')

t.test('the import graph of src/ has no cycle', async (t) => {
  const graph = importGraph(SRC, ['generated'])
  t.ok(graph.size > 100, `read the sources (${graph.size} modules)`)
  t.ok(
    [...graph.values()].some((deps) => deps.size > 0),
    'found imports',
  )
  const cycles = findCycles(graph)
  t.same(
    cycles.map((c) => c.map((f) => path.relative(SRC, f)).join(' -> ')),
    [],
    'import cycles',
  )
})

t.test('the walk finds a cycle when there is one (the check can fail)', async (t) => {
  const dir = t.testdir({
    'a.ts': "import type { B } from './b.js'\nexport type A = B\n",
    'b.ts': "export { c } from './c.js'\nexport type B = number\n",
    'c.ts': "import './a.js'\nexport const c = await import('./d.js')\n",
    'd.ts': 'export const d = 1\n',
  })
  const cycles = findCycles(importGraph(dir))
  t.same(
    cycles.map((c) => c.map((f) => path.basename(f)).join(' -> ')),
    ['a.ts -> b.ts -> c.ts -> a.ts'],
  )
})
