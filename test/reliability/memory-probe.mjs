// Loaded with --import into the `apmatrix serve` process of the fuzz runs (test/reliability/fuzz-service.ts),
// which also gets --expose-gc: on the message {type: 'memory'} over the IPC channel it forces full GCs
// and answers process.memoryUsage(). Nothing else; the channel does not keep the process alive.
// Without an IPC channel (watchers.test.ts, through NODE_OPTIONS) the same on SIGUSR2, answered on stderr as one
// line: `apmatrix-memory-probe {...process.memoryUsage()}`.
// Several rounds with turns of the event loop between them: closed sockets and timers release their
// objects only after their callbacks ran, and weak references need a second collection.
async function collect() {
  for (let i = 0; i < 4; i++) {
    globalThis.gc()
    await new Promise((r) => setTimeout(r, 50))
  }
  return process.memoryUsage()
}
if (!process.send && typeof globalThis.gc === 'function') {
  process.on('SIGUSR2', async () => {
    process.stderr.write(`apmatrix-memory-probe ${JSON.stringify(await collect())}\n`)
  })
}
if (process.send && typeof globalThis.gc === 'function') {
  process.channel?.unref()
  process.on('message', async (m) => {
    if (m?.type !== 'memory') return
    process.send({ type: 'memory', ...(await collect()) })
  })
}
