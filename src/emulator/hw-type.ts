/** O-6: the AP types the bus knows (CEX4 = 10 .. CEX8 = 14), and the compatibility type of a raw one. Pure. */

const MIN_TYPE = 10
const MAX_TYPE = 14

/** O-6: compatibility type for a raw type, or undefined when no card is created. */
export function compatType(rawType: number, qact: boolean): number | undefined {
  if (rawType >= MIN_TYPE && rawType <= MAX_TYPE) return rawType
  // O-6: above CEX8, PQAP(QACT) maps to the highest compatible known type when the facility exists.
  if (rawType > MAX_TYPE && qact) return MAX_TYPE
  return undefined
}
