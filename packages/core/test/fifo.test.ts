import { assert, describe, it } from "@effect/vitest"
import { Fifo } from "../src/internal/fifo.ts"

describe("internal/fifo", () => {
  it("hands items back in order, across drains and compactions", () => {
    const q = new Fifo<number>()
    assert.strictEqual(q.shift(), undefined)
    let next = 0
    let expected = 0
    // pushes outpace shifts (compaction), then drain (start over), several times
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 3000; i++) {
        q.push(next++)
        q.push(next++)
        assert.strictEqual(q.shift(), expected++)
      }
      assert.strictEqual(q.size, next - expected)
      while (q.size > 0) assert.strictEqual(q.shift(), expected++)
      assert.strictEqual(q.shift(), undefined)
    }
  })

  it("takeAll empties the queue, oldest first", () => {
    const q = new Fifo<string>()
    for (const s of ["a", "b", "c", "d"]) q.push(s)
    assert.strictEqual(q.shift(), "a")
    assert.deepStrictEqual(q.takeAll(), ["b", "c", "d"])
    assert.strictEqual(q.size, 0)
    q.push("e")
    assert.strictEqual(q.shift(), "e")
  })
})
