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

/** The character codes of the hexadecimal digits. */
const h = new Uint8Array(16)
for (let i = 0; i < 16; i++) h[i] = i.toString(16).charCodeAt(0)

const pool = new Uint8Array(4096)
let pos = pool.length

/** @internal */
export const randomUUID = (): string => {
  if (pos === pool.length) {
    crypto.getRandomValues(pool)
    pos = 0
  }
  const p = pool
  const o = pos
  pos += 16
  // version 4, variant 10xx (RFC 9562)
  const b0 = p[o]!
  const b1 = p[o + 1]!
  const b2 = p[o + 2]!
  const b3 = p[o + 3]!
  const b4 = p[o + 4]!
  const b5 = p[o + 5]!
  const b6 = (p[o + 6]! & 0x0f) | 0x40
  const b7 = p[o + 7]!
  const b8 = (p[o + 8]! & 0x3f) | 0x80
  const b9 = p[o + 9]!
  const b10 = p[o + 10]!
  const b11 = p[o + 11]!
  const b12 = p[o + 12]!
  const b13 = p[o + 13]!
  const b14 = p[o + 14]!
  const b15 = p[o + 15]!
  // the codes as arguments, straight from the bytes: no loop, no array of
  // codes (spreading one into the call costs about as much as the string)
  return String.fromCharCode(
    h[b0 >> 4]!, h[b0 & 15]!, h[b1 >> 4]!, h[b1 & 15]!, h[b2 >> 4]!, h[b2 & 15]!, h[b3 >> 4]!, h[b3 & 15]!,
    45, h[b4 >> 4]!, h[b4 & 15]!, h[b5 >> 4]!, h[b5 & 15]!, 45, h[b6 >> 4]!, h[b6 & 15]!,
    h[b7 >> 4]!, h[b7 & 15]!, 45, h[b8 >> 4]!, h[b8 & 15]!, h[b9 >> 4]!, h[b9 & 15]!, 45,
    h[b10 >> 4]!, h[b10 & 15]!, h[b11 >> 4]!, h[b11 & 15]!, h[b12 >> 4]!, h[b12 & 15]!, h[b13 >> 4]!, h[b13 & 15]!,
    h[b14 >> 4]!, h[b14 & 15]!, h[b15 >> 4]!, h[b15 & 15]!
  )
}
