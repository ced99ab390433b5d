/**
 * Random (version 4) UUIDs as flat strings.
 *
 * `crypto.randomUUID()` in Node builds its string by concatenation: a tree of
 * about a dozen cons strings that V8 keeps as it is. Task ids live as long as
 * their records (a day by default), so each such id held ~450 bytes, and cost
 * the garbage collector as much to copy, against ~50 for a flat one. These
 * are made from the same source of randomness (`crypto.getRandomValues`,
 * drawn 4 KiB at a time) with `String.fromCharCode`, which makes a flat
 * string.
 *
 * @internal
 */

const hexCodes = new Uint8Array(512)
for (let i = 0; i < 256; i++) {
  const h = i.toString(16).padStart(2, "0")
  hexCodes[2 * i] = h.charCodeAt(0)
  hexCodes[2 * i + 1] = h.charCodeAt(1)
}

const pool = new Uint8Array(4096)
let pos = pool.length
/** The character codes of the next id; the dashes stay in place. */
const codes: Array<number> = new Array(36).fill(45)

/** @internal */
export const randomUUID = (): string => {
  if (pos === pool.length) {
    crypto.getRandomValues(pool)
    pos = 0
  }
  let o = 0
  for (let i = 0; i < 16; i++) {
    if (o === 8 || o === 13 || o === 18 || o === 23) o++
    let v = pool[pos + i]!
    // version 4, variant 10xx (RFC 9562)
    if (i === 6) v = (v & 0x0f) | 0x40
    else if (i === 8) v = (v & 0x3f) | 0x80
    codes[o++] = hexCodes[2 * v]!
    codes[o++] = hexCodes[2 * v + 1]!
  }
  pos += 16
  // the codes as arguments, not through `apply`: spreading an array-like
  // into a call costs about as much as making the string
  const c = codes
  return String.fromCharCode(
    c[0]!, c[1]!, c[2]!, c[3]!, c[4]!, c[5]!, c[6]!, c[7]!, c[8]!, c[9]!, c[10]!, c[11]!,
    c[12]!, c[13]!, c[14]!, c[15]!, c[16]!, c[17]!, c[18]!, c[19]!, c[20]!, c[21]!, c[22]!, c[23]!,
    c[24]!, c[25]!, c[26]!, c[27]!, c[28]!, c[29]!, c[30]!, c[31]!, c[32]!, c[33]!, c[34]!, c[35]!
  )
}
