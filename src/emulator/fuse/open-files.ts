/**
 * The files open on the FUSE mount. Like sysfs's per-open buffer, each open attribute keeps the text its
 * `show` rendered for the read at offset 0, so reads at later offsets are served from that one rendering
 * (a reader that reads in small pieces sees one consistent text, not pieces of several).
 */

/** One open attribute. */
export interface OpenFile {
  /** The path as the mount sees it (`/bus/ap/apmask`). */
  readonly path: string
  /** The bytes of the last rendering, once a read happened. */
  text?: Buffer
}

/** Handles are uint32 and fuse-native treats 0 as "no handle": they run 1 .. 2^32-1, then start over. */
const MAX_HANDLE = 0xffff_ffff

/** File handles to open files. Not thread-safe: used on Node's one thread only. */
export class OpenFiles {
  private readonly files = new Map<number, OpenFile>()
  private next = 1

  /** Registers an open file; returns its handle (never 0, never one that is still open). */
  open(path: string): number {
    while (this.files.has(this.next)) this.step()
    const fh = this.next
    this.files.set(fh, { path })
    this.step()
    return fh
  }

  /** The open file of a handle, or undefined for an unknown (or released) one. */
  get(fh: number): OpenFile | undefined {
    return this.files.get(fh)
  }

  /** Forgets a handle; idempotent. */
  release(fh: number): void {
    this.files.delete(fh)
  }

  /** How many files are open. */
  get size(): number {
    return this.files.size
  }

  private step(): void {
    this.next = this.next >= MAX_HANDLE ? 1 : this.next + 1
  }
}
