;; Traps at once: an `unreachable` instruction in the entry point.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    unreachable))
