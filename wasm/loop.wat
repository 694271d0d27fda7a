;; Never finishes: an infinite loop that only fuel or an epoch deadline can stop.
(module
  (memory (export "memory") 1)
  (global $spins (mut i64) (i64.const 0))
  (func (export "_start")
    (loop $forever
      (global.set $spins (i64.add (global.get $spins) (i64.const 1)))
      (br $forever))))
