import { assert, describe, it } from "@effect/vitest"
import { randomUUID } from "../src/internal/uuid.ts"

describe("internal/uuid", () => {
  it("makes version 4 UUIDs, distinct across pool refills", () => {
    const seen = new Set<string>()
    // 4 KiB of randomness makes 256 ids: cross a few refills
    for (let i = 0; i < 2000; i++) {
      const id = randomUUID()
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
      seen.add(id)
    }
    assert.strictEqual(seen.size, 2000)
  })

  it("does not reuse the characters of an id it handed out", () => {
    const a = randomUUID()
    const copy = `${a}`
    randomUUID()
    assert.strictEqual(a, copy)
  })
})
