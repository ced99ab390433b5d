/**
 * A first-in first-out queue whose `shift` is O(1): `Array.prototype.shift`
 * moves every element left once the array is past a small size (a claim of
 * hundreds of deliveries paid that per task).
 *
 * @internal
 */
export class Fifo<A> {
  private items: Array<A | undefined> = []
  private head = 0

  get size(): number {
    return this.items.length - this.head
  }

  push(item: A): void {
    this.items.push(item)
  }

  shift(): A | undefined {
    if (this.head >= this.items.length) return undefined
    const item = this.items[this.head]
    this.items[this.head] = undefined
    this.head++
    if (this.head === this.items.length) {
      // drained: start over (the common case)
      this.items = []
      this.head = 0
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return item
  }

  /** Takes every item, oldest first. */
  takeAll(): Array<A> {
    const all = this.items.slice(this.head) as Array<A>
    this.items = []
    this.head = 0
    return all
  }
}
