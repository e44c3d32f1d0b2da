/** The signals that stop a long-running verb (`serve`-like: emulator serve, agent). */

/** The first SIGTERM or SIGINT from now on; `cancel` stops listening (signals act as default again). */
export function stopSignal(): { next: Promise<NodeJS.Signals>; cancel: () => void } {
  let cancel = (): void => undefined
  const next = new Promise<NodeJS.Signals>((resolve) => {
    const on = (sig: NodeJS.Signals): void => {
      cancel()
      resolve(sig)
    }
    cancel = () => {
      process.off('SIGTERM', on)
      process.off('SIGINT', on)
    }
    process.on('SIGTERM', on)
    process.on('SIGINT', on)
  })
  return { next, cancel }
}
