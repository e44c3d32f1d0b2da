/**
 * The import graph of a folder of TypeScript sources, and its cycles (used by
 * test/architecture/import-cycles.test.ts). Reads files as text: `import ... from '...'`,
 * `export ... from '...'`, side-effect `import '...'` and `import('...')` of relative modules.
 */
import fs from 'node:fs'
import path from 'node:path'

const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(?\s*)['"](\.{1,2}\/[^'"]+)['"]/g

/** Every `.ts` file under `root` (absolute paths) and the files it imports. `skip` names folders left out. */
export function importGraph(root: string, skip: readonly string[] = []): Map<string, Set<string>> {
  const files: string[] = []
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name)
      if (e.isDirectory()) {
        if (!skip.includes(e.name)) walk(p)
      } else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) files.push(p)
    }
  }
  walk(root)
  const known = new Set(files)
  const graph = new Map<string, Set<string>>()
  for (const f of files) {
    const deps = new Set<string>()
    // Comments may quote imports (doc examples); strip them first.
    const text = fs
      .readFileSync(f, 'utf8')
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .replace(/^\s*\/\/.*$/gm, '')
    for (const m of text.matchAll(SPECIFIER)) {
      const target = path.resolve(path.dirname(f), m[1]!).replace(/\.js$/, '.ts')
      const resolved = known.has(target) ? target : known.has(path.join(target, 'index.ts')) ? path.join(target, 'index.ts') : null
      if (resolved) deps.add(resolved)
    }
    graph.set(f, deps)
  }
  return graph
}

/** The cycles of the graph, one per strongly connected component of more than one module (or a self import), each as a path that returns to its start. */
export function findCycles(graph: Map<string, Set<string>>): string[][] {
  // Tarjan's strongly connected components, then one concrete cycle per component.
  let index = 0
  const idx = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const onStack = new Set<string>()
  const components: string[][] = []
  const connect = (v: string) => {
    idx.set(v, index)
    low.set(v, index++)
    stack.push(v)
    onStack.add(v)
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        connect(w)
        low.set(v, Math.min(low.get(v)!, low.get(w)!))
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!))
    }
    if (low.get(v) === idx.get(v)) {
      const c: string[] = []
      let w: string
      do {
        w = stack.pop()!
        onStack.delete(w)
        c.push(w)
      } while (w !== v)
      if (c.length > 1 || graph.get(v)?.has(v)) components.push(c)
    }
  }
  for (const v of [...graph.keys()].sort()) if (!idx.has(v)) connect(v)
  return components.map((c) => cycleIn(graph, new Set(c), [...c].sort()[0]!)).sort((a, b) => (a[0]! < b[0]! ? -1 : 1))
}

/** A shortest path from `start` back to itself inside `members` (breadth first). */
function cycleIn(graph: Map<string, Set<string>>, members: Set<string>, start: string): string[] {
  const prev = new Map<string, string>()
  const queue = [start]
  for (let i = 0; i < queue.length; i++) {
    const v = queue[i]!
    for (const w of [...(graph.get(v) ?? [])].sort()) {
      if (!members.has(w)) continue
      if (w === start) {
        const pathBack = [v]
        while (pathBack[0] !== start) pathBack.unshift(prev.get(pathBack[0]!)!)
        return [...pathBack, start]
      }
      if (!prev.has(w)) {
        prev.set(w, v)
        queue.push(w)
      }
    }
  }
  return [start, start]
}
