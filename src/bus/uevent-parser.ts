/**
 * Parser of `udevadm monitor --property` output (systemd's udevadm-monitor.c), fed in arbitrary chunks.
 * Each event is a header line, its properties one `KEY=value` per line, and a blank line:
 *
 *     KERNEL[1234.567890] add      /devices/ap/card05/05.0004 (ap)
 *     ACTION=add
 *     DEVPATH=/devices/ap/card05/05.0004
 *     SUBSYSTEM=ap
 *     SEQNUM=4711
 *
 * The header is `%-6s[%sec.%06usec] %-8s %s (%s)`: the source (`KERNEL` or `UDEV`), a monotonic
 * timestamp, the action, the devpath and the subsystem. udevadm first prints a few banner lines
 * (`monitor will print the received events for:`, `KERNEL - the kernel uevent`); they are reported as
 * `banner` so a caller can tell that the monitor is set up. Pure: no I/O.
 */

/** One event of the monitor. */
export interface MonitorUevent {
  source: 'KERNEL' | 'UDEV'
  /** Seconds (monotonic clock of the monitor's host), as printed. */
  timestamp: number
  action: string
  devpath: string
  subsystem: string
  /** The properties of the event (`ACTION`, `DEVPATH`, `SUBSYSTEM`, `SEQNUM`, driver specific ones). */
  env: Record<string, string>
}

/** What one line meant. */
export type MonitorItem = { kind: 'event'; event: MonitorUevent } | { kind: 'banner'; line: string }

// UEVENT is what udevmonitor printed for kernel events before udevadm (udev < 128); same meaning as KERNEL.
const HEADER = /^(KERNEL|UDEV|UEVENT)\s*\[(\d+)\.(\d+)\]\s+(\S+)\s+(\S+)\s+\((.*)\)\s*$/
const PROPERTY = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/
/** Longest line kept: a uevent buffer is at most 2048 bytes (UEVENT_BUFFER_SIZE); more is noise. */
const MAX_LINE = 8192

/** Incremental parser: push chunks, get the complete items they finish. */
export class UeventParser {
  private buffer = ''
  private current: MonitorUevent | null = null

  /** Consumes `chunk`; returns the items completed by it, in order. */
  push(chunk: string): MonitorItem[] {
    this.buffer += chunk
    const out: MonitorItem[] = []
    let i: number
    while ((i = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, i).replace(/\r$/, '')
      this.buffer = this.buffer.slice(i + 1)
      this.line(line, out)
    }
    // A runaway line without a newline: drop it rather than grow without bound.
    if (this.buffer.length > MAX_LINE) this.buffer = ''
    return out
  }

  /** End of input: the last event even without its closing blank line. */
  end(): MonitorItem[] {
    const out: MonitorItem[] = []
    if (this.buffer !== '') this.line(this.buffer, out)
    this.buffer = ''
    this.flush(out)
    return out
  }

  private line(line: string, out: MonitorItem[]): void {
    if (line.length > MAX_LINE) return
    const h = HEADER.exec(line)
    if (h) {
      this.flush(out)
      this.current = {
        source: h[1] === 'UDEV' ? 'UDEV' : 'KERNEL',
        timestamp: Number(`${h[2]}.${h[3]}`),
        action: h[4]!,
        devpath: h[5]!,
        subsystem: h[6]!,
        env: {},
      }
      return
    }
    if (line.trim() === '') {
      this.flush(out)
      return
    }
    if (this.current) {
      const p = PROPERTY.exec(line)
      if (p) this.current.env[p[1]!] = p[2]!
      return
    }
    // Outside an event: the banner udevadm prints once it has set its monitors up.
    out.push({ kind: 'banner', line })
  }

  private flush(out: MonitorItem[]): void {
    if (this.current) out.push({ kind: 'event', event: this.current })
    this.current = null
  }
}
