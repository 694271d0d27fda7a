;; Grows its memory one 64 KiB page at a time until growing fails, then traps. The loop also
;; touches each new page so that an optimiser cannot drop the growth.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (local $old i32)
    (loop $grow
      (local.set $old (memory.grow (i32.const 1)))
      (if (i32.eq (local.get $old) (i32.const -1))
        (then unreachable))
      (i32.store8 (i32.mul (local.get $old) (i32.const 65536)) (i32.const 1))
      (br $grow))))
