/**
 * Cooperative yielding for loops whose length grows with the host (style.md habit 8). On the default
 * setup (SQLite through a synchronous driver, the emulator in this process) every `await` settles as a
 * microtask, so a loop of awaited calls never lets the event loop turn: HTTP requests, timers and other
 * hosts' passes wait until it ends. A yielder lets them run once the loop has held the thread for a time
 * budget, at the cost of one macrotask turn per budget.
 */
import { setImmediate as nextTurn } from 'node:timers/promises'

/** Milliseconds a loop may hold the event loop before {@link Yielder} lets other work run. */
export const DEFAULT_TURN_BUDGET_MS = 5

/**
 * Call `await y()` once per iteration: it returns undefined (nothing to wait for) until the budget is spent,
 * then a promise of one event-loop turn. In a tight loop over 65,536 items, `const p = y(); if (p) await p`
 * saves the microtask an `await undefined` costs.
 */
export type Yielder = () => Promise<void> | undefined

/**
 * A yielder with its own clock: it yields (one `setImmediate` turn) when more than `budgetMs` passed since it
 * last yielded or was made, looking at the clock every `checkEvery` calls. Each loop makes its own. Never throws.
 */
export function createYielder(budgetMs = DEFAULT_TURN_BUDGET_MS, checkEvery = 1): Yielder {
  let since = performance.now()
  let calls = 0
  const turned = () => {
    since = performance.now()
  }
  return () => {
    if (++calls % checkEvery !== 0 || performance.now() - since < budgetMs) return undefined
    return nextTurn().then(turned)
  }
}

/** Lets the event loop turn once (timers, I/O callbacks, other hosts' passes), unconditionally. */
export function yieldTurn(): Promise<void> {
  return nextTurn()
}
