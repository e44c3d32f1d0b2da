/**
 * The APQN grid on one <canvas>: adapters as rows, usage domains as columns, each cell filled with its
 * owner's colour and marked in its corners (the centre always shows the owner colour). 65,536 cells are
 * one pass of fillRect calls, and a live update repaints only the cells it changed; hover and click are a
 * division (hit-testing), not 65,536 DOM nodes.
 */
import { type Cell, cellColor, key, type View } from './model.js'

/** The plan drawn over the grid. */
export interface Overlay {
  claimed: Map<string, string | null>
  drained: Set<string>
  /** Violations by APQN (their fix is in the side panel). */
  violations: Map<string, string[]>
  /** Adapters / domains a violation names without an APQN (mask bits). */
  rows: Set<number>
  cols: Set<number>
}

/** Mark colours (legend and canvas). */
export const MARK_COLORS = {
  guest: '#111111',
  filtered: '#d00000',
  unbound: '#7b2cbf',
  down: '#000000',
  inflight: '#ff7f0e',
  claimed: '#1d4ed8',
  drained: '#0f766e',
  violation: '#d00000',
  highlight: '#000000',
  cursor: '#c026d3',
  selection: '#1d4ed8',
}

const LABEL = 30

/** Width of the rings drawn on a cell of `s` px. */
function ringWidth(s: number): number {
  return s >= 12 ? 2 : 1
}

/** Side of the corner marks of a cell of `s` px. */
function markSize(s: number): number {
  return Math.max(2, Math.min(10, Math.floor(s * 0.3)))
}

/** Geometry and drawing of the grid. */
export class Grid {
  view: View | null = null
  overlay: Overlay | null = null
  highlight: string | null = null
  cursor: { r: number; c: number } | null = null
  selection: { r0: number; c0: number; r1: number; c1: number } | null = null
  cell = 16
  /** Count of finished draws (tests and the benchmark wait on it). */
  draws = 0
  /** What the canvas shows: the view, the overlay and the rest of what the last draw depended on ({@link frameOf}). */
  private shown: { view: View; overlay: Overlay | null; frame: string } | null = null
  private readonly ctx: CanvasRenderingContext2D

  constructor(readonly canvas: HTMLCanvasElement) {
    this.ctx = canvas.getContext('2d', { willReadFrequently: true })!
  }

  /** Left/top offset of the cells (room for the id labels). */
  get origin(): number {
    return LABEL
  }

  /** Canvas (CSS pixel) coordinates of the centre of a cell, or null when the cell is not on the grid. */
  center(apid: number, apqi: number): { x: number; y: number } | null {
    const v = this.view
    if (!v) return null
    const r = v.rows.indexOf(apid)
    const c = v.cols.indexOf(apqi)
    if (r < 0 || c < 0) return null
    return { x: LABEL + c * this.cell + this.cell / 2, y: LABEL + r * this.cell + this.cell / 2 }
  }

  /**
   * A canvas pixel (CSS px, integer) inside one part of a cell: `center` shows the owner colour, `edge` (left
   * edge, middle) the violation ring, `claimRing` the ring of an APQN a plan claims, the corners the marks (`topLeft` in a guest, `topRight` filtered,
   * `bottomLeft` unbound, `bottomRight` checkstopped/offline). Meant for cells of 12 px and more.
   */
  point(
    apid: number,
    apqi: number,
    where: 'center' | 'edge' | 'claimRing' | 'topLeft' | 'topRight' | 'bottomLeft' | 'bottomRight',
  ): { x: number; y: number } | null {
    const v = this.view
    if (!v) return null
    const r = v.rows.indexOf(apid)
    const c = v.cols.indexOf(apqi)
    if (r < 0 || c < 0) return null
    const s = this.cell
    const x0 = LABEL + c * s
    const y0 = LABEL + r * s
    const inner = s - (s >= 6 ? 1 : 0)
    const m = markSize(s)
    const k = Math.max(1, Math.floor(m / 4))
    switch (where) {
      case 'center':
        return { x: x0 + Math.floor(inner / 2), y: y0 + Math.floor(inner / 2) }
      case 'edge':
        return { x: x0, y: y0 + Math.floor(inner / 2) }
      case 'claimRing':
        return { x: x0 + 2 * ringWidth(s) - 1, y: y0 + Math.floor(inner / 2) }
      case 'topLeft':
        return { x: x0 + 2 * k, y: y0 + 2 * k }
      case 'topRight':
        return { x: x0 + inner - 2 * k, y: y0 + k }
      case 'bottomLeft':
        return { x: x0 + k, y: y0 + inner - 2 * k }
      case 'bottomRight':
        return { x: x0 + inner - 2 * k, y: y0 + inner - 2 * k }
    }
  }

  /** The row and column under a canvas point, or null. */
  hit(x: number, y: number): { r: number; c: number } | null {
    const v = this.view
    if (!v) return null
    const c = Math.floor((x - LABEL) / this.cell)
    const r = Math.floor((y - LABEL) / this.cell)
    if (x < LABEL || y < LABEL || r >= v.rows.length || c >= v.cols.length) return null
    return { r, c }
  }

  /** The cell at a row and column index. */
  cellAt(r: number, c: number): Cell | undefined {
    const v = this.view
    if (!v) return undefined
    return v.cells.get(key(v.rows[r]!, v.cols[c]!))
  }

  /**
   * Draws the view. When only cells changed since the last draw (same geometry, device colours, plan overlay,
   * highlight, cursor and selection), repaints just those cells (a cell object that changed is a new object:
   * buildView reuses unchanged ones), then the selection and cursor over them; otherwise everything. A live
   * update of a few APQNs on a 256 x 256 grid then costs a few fillRects, not 65,536.
   */
  draw(): void {
    const v = this.view
    if (!v) return
    const frame = this.frameOf(v)
    const shown = this.shown
    // The overlay by identity: a new plan is a new object.
    if (shown && shown.view !== v && shown.overlay === this.overlay && shown.frame === frame) this.drawChanged(shown.view, v)
    else this.drawAll(v)
    this.shown = { view: v, overlay: this.overlay, frame }
    this.draws++
    this.canvas.dataset.draws = String(this.draws)
  }

  /** Everything besides the cells and the overlay that a draw depends on, as one string. */
  private frameOf(v: View): string {
    return JSON.stringify([this.cell, window.devicePixelRatio || 1, v.rows, v.cols, v.devices.map((d) => d.color), this.highlight, this.cursor, this.selection])
  }

  private drawAll(v: View): void {
    const ctx = this.ctx
    const s = this.cell
    const w = LABEL + v.cols.length * s + 1
    const h = LABEL + v.rows.length * s + 1
    const dpr = window.devicePixelRatio || 1
    if (this.canvas.width !== Math.round(w * dpr) || this.canvas.height !== Math.round(h * dpr)) {
      this.canvas.width = Math.round(w * dpr)
      this.canvas.height = Math.round(h * dpr)
      this.canvas.style.width = `${w}px`
      this.canvas.style.height = `${h}px`
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0)
    ctx.fillStyle = '#ffffff'
    ctx.fillRect(0, 0, w, h)
    this.labels(v, s)
    this.paintCells(v, v.cells.values(), false)
    const o = this.overlay
    if (o) {
      const inner = s - (s >= 6 ? 1 : 0)
      const rIdx = new Map(v.rows.map((id, i) => [id, i]))
      const cIdx = new Map(v.cols.map((id, i) => [id, i]))
      ctx.fillStyle = MARK_COLORS.violation
      for (const apid of o.rows) if (rIdx.has(apid)) ctx.fillRect(0, LABEL + rIdx.get(apid)! * s, 4, inner)
      for (const apqi of o.cols) if (cIdx.has(apqi)) ctx.fillRect(LABEL + cIdx.get(apqi)! * s, 0, inner, 4)
    }
    this.paintCursor()
  }

  /** Repaints the cells of `v` that are not the same objects in `old`; everything when most of them changed. */
  private drawChanged(old: View, v: View): void {
    const changed: Cell[] = []
    if (v.cells !== old.cells) for (const [k, cell] of v.cells) if (old.cells.get(k) !== cell) changed.push(cell)
    const dpr = window.devicePixelRatio || 1
    // A cursor drawn again on a fractional scale would darken its anti-aliased edges: draw everything then.
    if (changed.length > v.cells.size / 4 || ((this.cursor || this.selection) && !Number.isInteger(dpr))) {
      this.drawAll(v)
      return
    }
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0)
    this.paintCells(v, changed, true)
    this.paintCursor()
  }

  /**
   * Paints `cells`: owner colour, marks, the highlight ring and the plan overlay. `clear`: first fills each
   * cell's whole pitch (gap included) white, as drawAll's background is. Everything stays inside the pitch.
   */
  private paintCells(v: View, cells: Iterable<Cell>, clear: boolean): void {
    const ctx = this.ctx
    const s = this.cell
    const gap = s >= 6 ? 1 : 0
    const inner = s - gap
    const m = markSize(s)
    const rIdx = new Map(v.rows.map((id, i) => [id, i]))
    const cIdx = new Map(v.cols.map((id, i) => [id, i]))
    const x0 = (cell: Cell) => LABEL + cIdx.get(cell.apqi)! * s
    const y0 = (cell: Cell) => LABEL + rIdx.get(cell.apid)! * s
    // Fill by colour to keep style changes few on a large grid.
    const byColor = new Map<string, Cell[]>()
    const list: Cell[] = []
    for (const cell of cells) {
      list.push(cell)
      const col = cellColor(v, cell)
      let same = byColor.get(col)
      if (!same) byColor.set(col, (same = []))
      same.push(cell)
    }
    if (clear) {
      ctx.fillStyle = '#ffffff'
      for (const cell of list) ctx.fillRect(x0(cell), y0(cell), s, s)
    }
    for (const [col, same] of byColor) {
      ctx.fillStyle = col
      for (const cell of same) ctx.fillRect(x0(cell), y0(cell), inner, inner)
    }
    const tri = (x: number, y: number, dx: number, dy: number, color: string) => {
      ctx.fillStyle = color
      ctx.beginPath()
      ctx.moveTo(x, y)
      ctx.lineTo(x + dx, y)
      ctx.lineTo(x, y + dy)
      ctx.closePath()
      ctx.fill()
    }
    for (const cell of list) {
      const mk = cell.marks
      if (!mk.guest && !mk.filtered && !mk.unbound && !mk.down && mk.inflight === 0) continue
      const x = x0(cell)
      const y = y0(cell)
      if (mk.guest) {
        ctx.fillStyle = MARK_COLORS.guest
        ctx.fillRect(x + 1, y + 1, Math.max(1, m - 2), Math.max(1, m - 2))
      }
      if (mk.filtered) tri(x + inner, y, -m, m, MARK_COLORS.filtered)
      if (mk.unbound) tri(x, y + inner, m, -m, MARK_COLORS.unbound)
      if (mk.down) tri(x + inner, y + inner, -m, -m, MARK_COLORS.down)
      if (mk.inflight > 0) {
        ctx.fillStyle = MARK_COLORS.inflight
        ctx.fillRect(x + Math.floor(inner / 3), y + inner - Math.max(1, Math.floor(m / 3)), Math.ceil(inner / 3), Math.max(1, Math.floor(m / 3)))
      }
    }
    const ring = (x: number, y: number, inset: number, width: number, color: string) => {
      if (inner - 2 * inset <= width) return
      ctx.strokeStyle = color
      ctx.lineWidth = width
      ctx.strokeRect(x + inset + width / 2, y + inset + width / 2, inner - 2 * inset - width, inner - 2 * inset - width)
    }
    const ringW = ringWidth(s)
    if (this.highlight) {
      for (const cell of list) if (cell.device === this.highlight) ring(x0(cell), y0(cell), 0, ringW, MARK_COLORS.highlight)
    }
    const o = this.overlay
    if (o) {
      for (const cell of list) {
        const x = x0(cell)
        const y = y0(cell)
        if (o.claimed.has(cell.apqn)) ring(x, y, ringW, ringW, MARK_COLORS.claimed)
        if (o.drained.has(cell.apqn)) {
          ctx.fillStyle = MARK_COLORS.drained
          ctx.fillRect(x + Math.floor(inner / 3), y + 1, Math.ceil(inner / 3), Math.max(1, Math.floor(m / 3)))
        }
        if (o.violations.has(cell.apqn)) ring(x, y, 0, ringW + 1, MARK_COLORS.violation)
      }
    }
  }

  /** The selection rectangle and the keyboard cursor, over the cells (on whole pixels at an integer scale: drawing them again changes nothing). */
  private paintCursor(): void {
    const ctx = this.ctx
    const s = this.cell
    const gap = s >= 6 ? 1 : 0
    if (this.selection) {
      const { r0, c0, r1, c1 } = this.selection
      ctx.strokeStyle = MARK_COLORS.selection
      ctx.lineWidth = 2
      ctx.setLineDash([4, 3])
      ctx.strokeRect(LABEL + Math.min(c0, c1) * s, LABEL + Math.min(r0, r1) * s, (Math.abs(c1 - c0) + 1) * s - gap, (Math.abs(r1 - r0) + 1) * s - gap)
      ctx.setLineDash([])
    }
    if (this.cursor) {
      ctx.strokeStyle = MARK_COLORS.cursor
      ctx.lineWidth = 2
      ctx.strokeRect(LABEL + this.cursor.c * s - 1, LABEL + this.cursor.r * s - 1, s + 1, s + 1)
    }
  }

  private labels(v: View, s: number): void {
    const ctx = this.ctx
    ctx.fillStyle = '#222222'
    ctx.font = '10px system-ui, sans-serif'
    ctx.textBaseline = 'middle'
    ctx.textAlign = 'right'
    const every = s >= 14 ? 1 : Math.ceil(14 / s) <= 4 ? 4 : 16
    v.rows.forEach((id, i) => {
      if (v.rows.length > 1 && i % every !== 0 && s < 14) return
      ctx.fillText(id.toString(16).padStart(2, '0'), LABEL - 4, LABEL + i * s + s / 2)
    })
    ctx.textAlign = 'center'
    v.cols.forEach((id, i) => {
      if (v.cols.length > 1 && i % every !== 0 && s < 14) return
      ctx.save()
      ctx.translate(LABEL + i * s + s / 2, LABEL / 2)
      if (s < 20) ctx.rotate(-Math.PI / 2)
      ctx.fillText(id.toString(16).padStart(s < 20 ? 2 : 4, '0'), 0, 0)
      ctx.restore()
    })
  }
}
