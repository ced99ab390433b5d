/**
 * A binary min-heap of (key, value) pairs. Entries are never removed from the
 * middle: callers delete lazily by checking, when an entry surfaces, that it
 * still stands for the current state.
 *
 * @internal
 */
export class MinHeap<A> {
  private keys: Array<number> = []
  private values: Array<A> = []

  get size(): number {
    return this.keys.length
  }

  push(key: number, value: A): void {
    const keys = this.keys
    const values = this.values
    let i = keys.length
    keys.push(key)
    values.push(value)
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (keys[parent]! <= key) break
      keys[i] = keys[parent]!
      values[i] = values[parent]!
      i = parent
    }
    keys[i] = key
    values[i] = value
  }

  peekKey(): number | undefined {
    return this.keys[0]
  }

  peek(): A | undefined {
    return this.values[0]
  }

  pop(): A | undefined {
    const keys = this.keys
    const values = this.values
    if (keys.length === 0) return undefined
    const top = values[0]
    const lastKey = keys.pop()!
    const lastValue = values.pop()!
    const n = keys.length
    if (n > 0) {
      let i = 0
      while (true) {
        const left = 2 * i + 1
        if (left >= n) break
        const right = left + 1
        const child = right < n && keys[right]! < keys[left]! ? right : left
        if (keys[child]! >= lastKey) break
        keys[i] = keys[child]!
        values[i] = values[child]!
        i = child
      }
      keys[i] = lastKey
      values[i] = lastValue
    }
    return top
  }
}

/**
 * A FIFO queue with O(1) push, shift and push-to-front.
 *
 * @internal
 */
export class Deque<A> {
  private items: Array<A | undefined> = []
  private head = 0
  private front: Array<A> = []

  get size(): number {
    return this.items.length - this.head + this.front.length
  }

  push(value: A): void {
    this.items.push(value)
  }

  unshift(value: A): void {
    this.front.push(value)
  }

  shift(): A | undefined {
    if (this.front.length > 0) return this.front.pop()
    if (this.head >= this.items.length) return undefined
    const value = this.items[this.head]
    this.items[this.head] = undefined
    this.head++
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return value
  }
}
