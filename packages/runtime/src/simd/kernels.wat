;; The norms' memory-bound loops as wasm SIMD, run in place on tfjs-backend-wasm's heap (the module imports
;; the backend's memory). Pointers are byte offsets of float32 arrays; a [rows, C] array is row-major (NHWC
;; activations with C channels). Columns go four at a time (f32x4), a tail of C mod 4 one at a time.
;; `npm run build:simd` assembles this file (wabt) into kernels-wasm.ts; a test checks the two agree.
;; A JS loop over the same data runs 2–4× slower than tfjs's own SIMD kernels, which is why these exist.
(module
  ;; MEMORY: the build writes the import here, plain or shared to match the backend's build
  ;; MEMORY-END

  ;; the four lanes of v, summed in float64
  (func $hsum (param $v v128) (result f64)
    (f64.add
      (f64.add (f64.promote_f32 (f32x4.extract_lane 0 (local.get $v))) (f64.promote_f32 (f32x4.extract_lane 1 (local.get $v))))
      (f64.add (f64.promote_f32 (f32x4.extract_lane 2 (local.get $v))) (f64.promote_f32 (f32x4.extract_lane 3 (local.get $v))))))

  ;; Column sums of a [rows, C]: s1[c] = Σ_r (a[r,c] − sa[c]), s2[c] = Σ_r (a[r,c] − sa[c])·(b[r,c] − sb[c]).
  ;; s1, s2 are float64 [C]; acc is scratch of 2C float32: float32 partial sums over blocks of 32 rows,
  ;; float64 across blocks. The shifts keep the sums small (batch statistics shift by row 0: one pass,
  ;; without E[x²] − μ²'s cancellation), and let a gradient take Σ dy·(x − μ) directly.
  (func (export "col_sums")
    (param $a i32) (param $b i32) (param $rows i32) (param $C i32) (param $sa i32) (param $sb i32)
    (param $acc i32) (param $s1 i32) (param $s2 i32)
    (local $r i32) (local $end i32) (local $o i32) (local $rowBytes i32) (local $vecBytes i32)
    (local $pa i32) (local $pb i32) (local $acc2 i32) (local $va v128) (local $vb v128) (local $xa f32) (local $xb f32)
    (local.set $rowBytes (i32.shl (local.get $C) (i32.const 2)))
    (local.set $vecBytes (i32.and (local.get $rowBytes) (i32.const -16)))
    (local.set $acc2 (i32.add (local.get $acc) (local.get $rowBytes)))
    (memory.fill (local.get $s1) (i32.const 0) (i32.shl (local.get $C) (i32.const 3)))
    (memory.fill (local.get $s2) (i32.const 0) (i32.shl (local.get $C) (i32.const 3)))
    (block $done (loop $blocks
      (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $end (i32.add (local.get $r) (i32.const 32)))
      (if (i32.gt_u (local.get $end) (local.get $rows)) (then (local.set $end (local.get $rows))))
      (memory.fill (local.get $acc) (i32.const 0) (i32.shl (local.get $rowBytes) (i32.const 1)))
      (loop $rowsLoop
        (local.set $pa (i32.add (local.get $a) (i32.mul (local.get $r) (local.get $rowBytes))))
        (local.set $pb (i32.add (local.get $b) (i32.mul (local.get $r) (local.get $rowBytes))))
        (local.set $o (i32.const 0))
        (block $vdone (loop $vec
          (br_if $vdone (i32.ge_u (local.get $o) (local.get $vecBytes)))
          (local.set $va (f32x4.sub (v128.load (i32.add (local.get $pa) (local.get $o))) (v128.load (i32.add (local.get $sa) (local.get $o)))))
          (local.set $vb (f32x4.sub (v128.load (i32.add (local.get $pb) (local.get $o))) (v128.load (i32.add (local.get $sb) (local.get $o)))))
          (v128.store (i32.add (local.get $acc) (local.get $o))
            (f32x4.add (v128.load (i32.add (local.get $acc) (local.get $o))) (local.get $va)))
          (v128.store (i32.add (local.get $acc2) (local.get $o))
            (f32x4.add (v128.load (i32.add (local.get $acc2) (local.get $o))) (f32x4.mul (local.get $va) (local.get $vb))))
          (local.set $o (i32.add (local.get $o) (i32.const 16)))
          (br $vec)))
        (block $sdone (loop $scalar
          (br_if $sdone (i32.ge_u (local.get $o) (local.get $rowBytes)))
          (local.set $xa (f32.sub (f32.load (i32.add (local.get $pa) (local.get $o))) (f32.load (i32.add (local.get $sa) (local.get $o)))))
          (local.set $xb (f32.sub (f32.load (i32.add (local.get $pb) (local.get $o))) (f32.load (i32.add (local.get $sb) (local.get $o)))))
          (f32.store (i32.add (local.get $acc) (local.get $o)) (f32.add (f32.load (i32.add (local.get $acc) (local.get $o))) (local.get $xa)))
          (f32.store (i32.add (local.get $acc2) (local.get $o))
            (f32.add (f32.load (i32.add (local.get $acc2) (local.get $o))) (f32.mul (local.get $xa) (local.get $xb))))
          (local.set $o (i32.add (local.get $o) (i32.const 4)))
          (br $scalar)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br_if $rowsLoop (i32.lt_u (local.get $r) (local.get $end))))
      ;; fold the block's float32 partials into the float64 sums
      (local.set $o (i32.const 0))
      (block $fdone (loop $fold
        (br_if $fdone (i32.ge_u (local.get $o) (local.get $rowBytes)))
        (f64.store (i32.add (local.get $s1) (i32.shl (local.get $o) (i32.const 1)))
          (f64.add (f64.load (i32.add (local.get $s1) (i32.shl (local.get $o) (i32.const 1))))
                   (f64.promote_f32 (f32.load (i32.add (local.get $acc) (local.get $o))))))
        (f64.store (i32.add (local.get $s2) (i32.shl (local.get $o) (i32.const 1)))
          (f64.add (f64.load (i32.add (local.get $s2) (i32.shl (local.get $o) (i32.const 1))))
                   (f64.promote_f32 (f32.load (i32.add (local.get $acc2) (local.get $o))))))
        (local.set $o (i32.add (local.get $o) (i32.const 4)))
        (br $fold)))
      (br $blocks))))

  ;; out[r,c] = a[r,c]·p[c] + b[r,c]·q[c] + s[c]; with b = 0 (no second input) out = a·p + s
  (func (export "col_affine")
    (param $a i32) (param $b i32) (param $rows i32) (param $C i32) (param $p i32) (param $q i32) (param $s i32) (param $out i32)
    (local $r i32) (local $o i32) (local $rowBytes i32) (local $vecBytes i32) (local $pa i32) (local $pb i32) (local $po i32)
    (local $v v128) (local $x f32)
    (local.set $rowBytes (i32.shl (local.get $C) (i32.const 2)))
    (local.set $vecBytes (i32.and (local.get $rowBytes) (i32.const -16)))
    (block $done (loop $rowsLoop
      (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $pa (i32.add (local.get $a) (i32.mul (local.get $r) (local.get $rowBytes))))
      (local.set $pb (i32.add (local.get $b) (i32.mul (local.get $r) (local.get $rowBytes))))
      (local.set $po (i32.add (local.get $out) (i32.mul (local.get $r) (local.get $rowBytes))))
      (local.set $o (i32.const 0))
      (block $vdone (loop $vec
        (br_if $vdone (i32.ge_u (local.get $o) (local.get $vecBytes)))
        (local.set $v (f32x4.add
          (f32x4.mul (v128.load (i32.add (local.get $pa) (local.get $o))) (v128.load (i32.add (local.get $p) (local.get $o))))
          (v128.load (i32.add (local.get $s) (local.get $o)))))
        (if (local.get $b) (then
          (local.set $v (f32x4.add (local.get $v)
            (f32x4.mul (v128.load (i32.add (local.get $pb) (local.get $o))) (v128.load (i32.add (local.get $q) (local.get $o))))))))
        (v128.store (i32.add (local.get $po) (local.get $o)) (local.get $v))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vec)))
      (block $sdone (loop $scalar
        (br_if $sdone (i32.ge_u (local.get $o) (local.get $rowBytes)))
        (local.set $x (f32.add
          (f32.mul (f32.load (i32.add (local.get $pa) (local.get $o))) (f32.load (i32.add (local.get $p) (local.get $o))))
          (f32.load (i32.add (local.get $s) (local.get $o)))))
        (if (local.get $b) (then
          (local.set $x (f32.add (local.get $x)
            (f32.mul (f32.load (i32.add (local.get $pb) (local.get $o))) (f32.load (i32.add (local.get $q) (local.get $o))))))))
        (f32.store (i32.add (local.get $po) (local.get $o)) (local.get $x))
        (local.set $o (i32.add (local.get $o) (i32.const 4)))
        (br $scalar)))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $rowsLoop))))

  ;; One row's mean and 1/√(var + ε) (biased variance), shifted by the row's first value; float32 lanes over
  ;; the row (C is a few hundred at most), float64 from there.
  (func $row_stats (param $px i32) (param $C i32) (param $eps f64) (result f64 f64)
    (local $o i32) (local $rowBytes i32) (local $vecBytes i32) (local $k f32) (local $kv v128) (local $d v128)
    (local $s1 v128) (local $s2 v128) (local $t1 f64) (local $t2 f64) (local $x f64) (local $n f64) (local $m f64)
    (local.set $rowBytes (i32.shl (local.get $C) (i32.const 2)))
    (local.set $vecBytes (i32.and (local.get $rowBytes) (i32.const -16)))
    (local.set $k (f32.load (local.get $px)))
    (local.set $kv (f32x4.splat (local.get $k)))
    (block $vdone (loop $vec
      (br_if $vdone (i32.ge_u (local.get $o) (local.get $vecBytes)))
      (local.set $d (f32x4.sub (v128.load (i32.add (local.get $px) (local.get $o))) (local.get $kv)))
      (local.set $s1 (f32x4.add (local.get $s1) (local.get $d)))
      (local.set $s2 (f32x4.add (local.get $s2) (f32x4.mul (local.get $d) (local.get $d))))
      (local.set $o (i32.add (local.get $o) (i32.const 16)))
      (br $vec)))
    (local.set $t1 (call $hsum (local.get $s1)))
    (local.set $t2 (call $hsum (local.get $s2)))
    (block $sdone (loop $scalar
      (br_if $sdone (i32.ge_u (local.get $o) (local.get $rowBytes)))
      (local.set $x (f64.promote_f32 (f32.sub (f32.load (i32.add (local.get $px) (local.get $o))) (local.get $k))))
      (local.set $t1 (f64.add (local.get $t1) (local.get $x)))
      (local.set $t2 (f64.add (local.get $t2) (f64.mul (local.get $x) (local.get $x))))
      (local.set $o (i32.add (local.get $o) (i32.const 4)))
      (br $scalar)))
    (local.set $n (f64.convert_i32_u (local.get $C)))
    (local.set $m (f64.div (local.get $t1) (local.get $n)))
    (f64.add (f64.promote_f32 (local.get $k)) (local.get $m))
    (f64.div (f64.const 1)
      (f64.sqrt (f64.add (f64.max (f64.const 0) (f64.sub (f64.div (local.get $t2) (local.get $n)) (f64.mul (local.get $m) (local.get $m))))
                         (local.get $eps)))))

  ;; Layer norm over the last axis: y = (x − μ_r)·rstd_r·γ + β. A row whose statistics are not finite is
  ;; written as a positive NaN throughout: x86 makes NaNs with the sign bit set, and the backend's relu
  ;; zeroes those, so a bad input would not reach the loss as NaN.
  (func (export "layer_norm")
    (param $x i32) (param $rows i32) (param $C i32) (param $eps f64) (param $g i32) (param $beta i32) (param $y i32)
    (local $r i32) (local $o i32) (local $rowBytes i32) (local $vecBytes i32) (local $px i32) (local $py i32)
    (local $mu f64) (local $rstd f64) (local $muv v128) (local $rv v128)
    (local.set $rowBytes (i32.shl (local.get $C) (i32.const 2)))
    (local.set $vecBytes (i32.and (local.get $rowBytes) (i32.const -16)))
    (block $done (loop $rowsLoop
      (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $px (i32.add (local.get $x) (i32.mul (local.get $r) (local.get $rowBytes))))
      (local.set $py (i32.add (local.get $y) (i32.mul (local.get $r) (local.get $rowBytes))))
      (call $row_stats (local.get $px) (local.get $C) (local.get $eps))
      (local.set $rstd)
      (local.set $mu)
      (local.set $o (i32.const 0))
      (if (f64.eq (f64.sub (f64.mul (local.get $mu) (local.get $rstd)) (f64.mul (local.get $mu) (local.get $rstd))) (f64.const 0))
        (then
          (local.set $muv (f32x4.splat (f32.demote_f64 (local.get $mu))))
          (local.set $rv (f32x4.splat (f32.demote_f64 (local.get $rstd))))
          (block $vdone (loop $vec
            (br_if $vdone (i32.ge_u (local.get $o) (local.get $vecBytes)))
            (v128.store (i32.add (local.get $py) (local.get $o))
              (f32x4.add
                (f32x4.mul
                  (f32x4.mul (f32x4.sub (v128.load (i32.add (local.get $px) (local.get $o))) (local.get $muv)) (local.get $rv))
                  (v128.load (i32.add (local.get $g) (local.get $o))))
                (v128.load (i32.add (local.get $beta) (local.get $o)))))
            (local.set $o (i32.add (local.get $o) (i32.const 16)))
            (br $vec)))
          (block $sdone (loop $scalar
            (br_if $sdone (i32.ge_u (local.get $o) (local.get $rowBytes)))
            (f32.store (i32.add (local.get $py) (local.get $o))
              (f32.add
                (f32.mul
                  (f32.mul (f32.sub (f32.load (i32.add (local.get $px) (local.get $o))) (f32.demote_f64 (local.get $mu)))
                           (f32.demote_f64 (local.get $rstd)))
                  (f32.load (i32.add (local.get $g) (local.get $o))))
                (f32.load (i32.add (local.get $beta) (local.get $o)))))
            (local.set $o (i32.add (local.get $o) (i32.const 4)))
            (br $scalar))))
        (else
          (block $ndone (loop $nan
            (br_if $ndone (i32.ge_u (local.get $o) (local.get $rowBytes)))
            (i32.store (i32.add (local.get $py) (local.get $o)) (i32.const 0x7fc00000))
            (local.set $o (i32.add (local.get $o) (i32.const 4)))
            (br $nan)))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $rowsLoop))))

  ;; Layer norm's gradient: with x̂ = (x − μ)·rstd and g = dy·γ, dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) per
  ;; row; dγ = Σ_r dy·x̂ and dβ = Σ_r dy into float64 [C] (dg, db), through 2C float32 of scratch (acc) per
  ;; block of 32 rows as col_sums. The statistics are recomputed from x (cheaper than keeping them on the tape).
  (func (export "layer_norm_grad")
    (param $dy i32) (param $x i32) (param $rows i32) (param $C i32) (param $eps f64) (param $g i32) (param $dx i32)
    (param $acc i32) (param $dg i32) (param $db i32)
    (local $r i32) (local $o i32) (local $rowBytes i32) (local $vecBytes i32) (local $px i32) (local $pd i32) (local $po i32)
    (local $acc2 i32) (local $mu f64) (local $rstd f64) (local $muv v128) (local $rv v128)
    (local $xh v128) (local $d v128) (local $gv v128) (local $sg v128) (local $sgx v128)
    (local $xs f32) (local $ds f32) (local $gs f32) (local $tg f64) (local $tgx f64) (local $n f64)
    (local $mgv v128) (local $mgxv v128) (local $mg f32) (local $mgx f32)
    (local.set $rowBytes (i32.shl (local.get $C) (i32.const 2)))
    (local.set $vecBytes (i32.and (local.get $rowBytes) (i32.const -16)))
    (local.set $acc2 (i32.add (local.get $acc) (local.get $rowBytes)))
    (local.set $n (f64.convert_i32_u (local.get $C)))
    (memory.fill (local.get $dg) (i32.const 0) (i32.shl (local.get $C) (i32.const 3)))
    (memory.fill (local.get $db) (i32.const 0) (i32.shl (local.get $C) (i32.const 3)))
    (memory.fill (local.get $acc) (i32.const 0) (i32.shl (local.get $rowBytes) (i32.const 1)))
    (block $done (loop $rowsLoop
      (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $px (i32.add (local.get $x) (i32.mul (local.get $r) (local.get $rowBytes))))
      (local.set $pd (i32.add (local.get $dy) (i32.mul (local.get $r) (local.get $rowBytes))))
      (local.set $po (i32.add (local.get $dx) (i32.mul (local.get $r) (local.get $rowBytes))))
      (call $row_stats (local.get $px) (local.get $C) (local.get $eps))
      (local.set $rstd)
      (local.set $mu)
      (local.set $muv (f32x4.splat (f32.demote_f64 (local.get $mu))))
      (local.set $rv (f32x4.splat (f32.demote_f64 (local.get $rstd))))
      (local.set $sg (v128.const i32x4 0 0 0 0))
      (local.set $sgx (v128.const i32x4 0 0 0 0))
      ;; pass 1: the row sums of g and g·x̂, the column sums of dy·x̂ and dy
      (local.set $o (i32.const 0))
      (block $v1done (loop $vec1
        (br_if $v1done (i32.ge_u (local.get $o) (local.get $vecBytes)))
        (local.set $xh (f32x4.mul (f32x4.sub (v128.load (i32.add (local.get $px) (local.get $o))) (local.get $muv)) (local.get $rv)))
        (local.set $d (v128.load (i32.add (local.get $pd) (local.get $o))))
        (local.set $gv (f32x4.mul (local.get $d) (v128.load (i32.add (local.get $g) (local.get $o)))))
        (local.set $sg (f32x4.add (local.get $sg) (local.get $gv)))
        (local.set $sgx (f32x4.add (local.get $sgx) (f32x4.mul (local.get $gv) (local.get $xh))))
        (v128.store (i32.add (local.get $acc) (local.get $o))
          (f32x4.add (v128.load (i32.add (local.get $acc) (local.get $o))) (f32x4.mul (local.get $d) (local.get $xh))))
        (v128.store (i32.add (local.get $acc2) (local.get $o))
          (f32x4.add (v128.load (i32.add (local.get $acc2) (local.get $o))) (local.get $d)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vec1)))
      (local.set $tg (call $hsum (local.get $sg)))
      (local.set $tgx (call $hsum (local.get $sgx)))
      (block $s1done (loop $scalar1
        (br_if $s1done (i32.ge_u (local.get $o) (local.get $rowBytes)))
        (local.set $xs (f32.mul (f32.sub (f32.load (i32.add (local.get $px) (local.get $o))) (f32.demote_f64 (local.get $mu)))
                                (f32.demote_f64 (local.get $rstd))))
        (local.set $ds (f32.load (i32.add (local.get $pd) (local.get $o))))
        (local.set $gs (f32.mul (local.get $ds) (f32.load (i32.add (local.get $g) (local.get $o)))))
        (local.set $tg (f64.add (local.get $tg) (f64.promote_f32 (local.get $gs))))
        (local.set $tgx (f64.add (local.get $tgx) (f64.promote_f32 (f32.mul (local.get $gs) (local.get $xs)))))
        (f32.store (i32.add (local.get $acc) (local.get $o))
          (f32.add (f32.load (i32.add (local.get $acc) (local.get $o))) (f32.mul (local.get $ds) (local.get $xs))))
        (f32.store (i32.add (local.get $acc2) (local.get $o))
          (f32.add (f32.load (i32.add (local.get $acc2) (local.get $o))) (local.get $ds)))
        (local.set $o (i32.add (local.get $o) (i32.const 4)))
        (br $scalar1)))
      ;; pass 2: dx
      (local.set $mg (f32.demote_f64 (f64.div (local.get $tg) (local.get $n))))
      (local.set $mgx (f32.demote_f64 (f64.div (local.get $tgx) (local.get $n))))
      (local.set $mgv (f32x4.splat (local.get $mg)))
      (local.set $mgxv (f32x4.splat (local.get $mgx)))
      (local.set $o (i32.const 0))
      (block $v2done (loop $vec2
        (br_if $v2done (i32.ge_u (local.get $o) (local.get $vecBytes)))
        (local.set $xh (f32x4.mul (f32x4.sub (v128.load (i32.add (local.get $px) (local.get $o))) (local.get $muv)) (local.get $rv)))
        (v128.store (i32.add (local.get $po) (local.get $o))
          (f32x4.mul (local.get $rv)
            (f32x4.sub
              (f32x4.sub
                (f32x4.mul (v128.load (i32.add (local.get $pd) (local.get $o))) (v128.load (i32.add (local.get $g) (local.get $o))))
                (local.get $mgv))
              (f32x4.mul (local.get $xh) (local.get $mgxv)))))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vec2)))
      (block $s2done (loop $scalar2
        (br_if $s2done (i32.ge_u (local.get $o) (local.get $rowBytes)))
        (local.set $xs (f32.mul (f32.sub (f32.load (i32.add (local.get $px) (local.get $o))) (f32.demote_f64 (local.get $mu)))
                                (f32.demote_f64 (local.get $rstd))))
        (f32.store (i32.add (local.get $po) (local.get $o))
          (f32.mul (f32.demote_f64 (local.get $rstd))
            (f32.sub
              (f32.sub
                (f32.mul (f32.load (i32.add (local.get $pd) (local.get $o))) (f32.load (i32.add (local.get $g) (local.get $o))))
                (local.get $mg))
              (f32.mul (local.get $xs) (local.get $mgx)))))
        (local.set $o (i32.add (local.get $o) (i32.const 4)))
        (br $scalar2)))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      ;; every 32 rows and at the end: fold the float32 column partials into dg, db
      (if (i32.or (i32.eqz (i32.and (local.get $r) (i32.const 31))) (i32.ge_u (local.get $r) (local.get $rows)))
        (then
          (local.set $o (i32.const 0))
          (block $fdone (loop $fold
            (br_if $fdone (i32.ge_u (local.get $o) (local.get $rowBytes)))
            (f64.store (i32.add (local.get $dg) (i32.shl (local.get $o) (i32.const 1)))
              (f64.add (f64.load (i32.add (local.get $dg) (i32.shl (local.get $o) (i32.const 1))))
                       (f64.promote_f32 (f32.load (i32.add (local.get $acc) (local.get $o))))))
            (f64.store (i32.add (local.get $db) (i32.shl (local.get $o) (i32.const 1)))
              (f64.add (f64.load (i32.add (local.get $db) (i32.shl (local.get $o) (i32.const 1))))
                       (f64.promote_f32 (f32.load (i32.add (local.get $acc2) (local.get $o))))))
            (local.set $o (i32.add (local.get $o) (i32.const 4)))
            (br $fold)))
          (memory.fill (local.get $acc) (i32.const 0) (i32.shl (local.get $rowBytes) (i32.const 1)))))
      (br $rowsLoop))))

  ;; GELU, exact (erf) form, four lanes at a time: Φ(x) = ½(1 + erf(x/√2)) by Abramowitz & Stegun 7.1.26
  ;; (|error| ≤ 1.5e-7, as tfjs's Erf kernels), and g = e^(−x²/2), which φ(x) = g/√(2π) shares. The
  ;; exponential is 2^u with u = −x²/2·log2(e) ≥ −126: 2^round(u) by the exponent bits times Cephes' exp2f
  ;; polynomial on [−½, ½] (relative error ~1e-7).
  (func $gelu_parts (param $x v128) (result v128 v128)
    (local $z v128) (local $t v128) (local $u v128) (local $n v128) (local $f v128) (local $g v128) (local $q v128)
    (local.set $z (f32x4.mul (f32x4.abs (local.get $x)) (f32x4.splat (f32.const 0.70710678118654752))))
    (local.set $t (f32x4.div (f32x4.splat (f32.const 1))
      (f32x4.add (f32x4.splat (f32.const 1)) (f32x4.mul (f32x4.splat (f32.const 0.3275911)) (local.get $z)))))
    (local.set $u (f32x4.max (f32x4.splat (f32.const -126))
      (f32x4.mul (f32x4.neg (f32x4.mul (local.get $z) (local.get $z))) (f32x4.splat (f32.const 1.4426950408889634)))))
    (local.set $n (f32x4.nearest (local.get $u)))
    (local.set $f (f32x4.sub (local.get $u) (local.get $n)))
    ;; 2^f = 1 + f·P(f)
    (local.set $g (f32x4.splat (f32.const 1.535336188319500e-4)))
    (local.set $g (f32x4.add (f32x4.mul (local.get $g) (local.get $f)) (f32x4.splat (f32.const 1.339887440266574e-3))))
    (local.set $g (f32x4.add (f32x4.mul (local.get $g) (local.get $f)) (f32x4.splat (f32.const 9.618437357674640e-3))))
    (local.set $g (f32x4.add (f32x4.mul (local.get $g) (local.get $f)) (f32x4.splat (f32.const 5.550332471162809e-2))))
    (local.set $g (f32x4.add (f32x4.mul (local.get $g) (local.get $f)) (f32x4.splat (f32.const 2.402264791363012e-1))))
    (local.set $g (f32x4.add (f32x4.mul (local.get $g) (local.get $f)) (f32x4.splat (f32.const 6.931472028550421e-1))))
    (local.set $g (f32x4.add (f32x4.mul (local.get $g) (local.get $f)) (f32x4.splat (f32.const 1))))
    ;; × 2^n: n + 127 into the exponent bits
    (local.set $g (f32x4.mul (local.get $g)
      (i32x4.shl (i32x4.add (i32x4.trunc_sat_f32x4_s (local.get $n)) (i32x4.splat (i32.const 127))) (i32.const 23))))
    ;; q = ½·(a1 t + … + a5 t⁵)·g = ½(1 − erf(|x|/√2)): Φ = 1 − q for x ≥ 0, q below
    (local.set $q (f32x4.splat (f32.const 1.061405429)))
    (local.set $q (f32x4.add (f32x4.mul (local.get $q) (local.get $t)) (f32x4.splat (f32.const -1.453152027))))
    (local.set $q (f32x4.add (f32x4.mul (local.get $q) (local.get $t)) (f32x4.splat (f32.const 1.421413741))))
    (local.set $q (f32x4.add (f32x4.mul (local.get $q) (local.get $t)) (f32x4.splat (f32.const -0.284496736))))
    (local.set $q (f32x4.add (f32x4.mul (local.get $q) (local.get $t)) (f32x4.splat (f32.const 0.254829592))))
    (local.set $q (f32x4.mul (f32x4.mul (local.get $q) (local.get $t)) (f32x4.mul (local.get $g) (f32x4.splat (f32.const 0.5)))))
    (v128.bitselect (local.get $q) (f32x4.sub (f32x4.splat (f32.const 1)) (local.get $q))
      (f32x4.lt (local.get $x) (f32x4.splat (f32.const 0))))
    (local.get $g))

  ;; y = x·Φ(x) over n ≥ 4 floats; the last vector overlaps the one before it where n is not a multiple of 4
  (func (export "gelu") (param $x i32) (param $n i32) (param $y i32)
    (local $o i32) (local $last i32) (local $v v128) (local $phi v128)
    (local.set $last (i32.shl (i32.sub (local.get $n) (i32.const 4)) (i32.const 2)))
    (loop $vec
      (if (i32.gt_u (local.get $o) (local.get $last)) (then (local.set $o (local.get $last))))
      (local.set $v (v128.load (i32.add (local.get $x) (local.get $o))))
      (call $gelu_parts (local.get $v))
      (drop)
      (local.set $phi)
      (v128.store (i32.add (local.get $y) (local.get $o)) (f32x4.mul (local.get $v) (local.get $phi)))
      (local.set $o (i32.add (local.get $o) (i32.const 16)))
      (br_if $vec (i32.lt_u (i32.sub (local.get $o) (i32.const 16)) (local.get $last)))))

  ;; dx = dy·(Φ(x) + x·φ(x)) over n ≥ 4 floats, the tail as gelu's
  (func (export "gelu_grad") (param $dy i32) (param $x i32) (param $n i32) (param $dx i32)
    (local $o i32) (local $last i32) (local $v v128) (local $phi v128) (local $g v128)
    (local.set $last (i32.shl (i32.sub (local.get $n) (i32.const 4)) (i32.const 2)))
    (loop $vec
      (if (i32.gt_u (local.get $o) (local.get $last)) (then (local.set $o (local.get $last))))
      (local.set $v (v128.load (i32.add (local.get $x) (local.get $o))))
      (call $gelu_parts (local.get $v))
      (local.set $g)
      (local.set $phi)
      (v128.store (i32.add (local.get $dx) (local.get $o))
        (f32x4.mul (v128.load (i32.add (local.get $dy) (local.get $o)))
          (f32x4.add (local.get $phi)
            (f32x4.mul (local.get $v) (f32x4.mul (local.get $g) (f32x4.splat (f32.const 0.3989422804014327)))))))
      (local.set $o (i32.add (local.get $o) (i32.const 16)))
      (br_if $vec (i32.lt_u (i32.sub (local.get $o) (i32.const 16)) (local.get $last)))))

  ;; out[m] = relu(T[idx[m]] + Σ_k X[m,k]·W[k]) for rows T [R, H], indices idx int32 [M], X [M, K], W [K, H]
  ;; (a gathered embedding plus a low-rank term, as a LIIF query's first layer). Returns −1, or the first m
  ;; whose index is outside [0, R) (nothing is read from outside the table).
  (func (export "gather_affine_relu")
    (param $T i32) (param $idx i32) (param $X i32) (param $W i32) (param $M i32) (param $K i32) (param $H i32) (param $R i32) (param $out i32)
    (result i32)
    (local $m i32) (local $k i32) (local $o i32) (local $row i32) (local $rowBytes i32) (local $vecBytes i32)
    (local $pt i32) (local $po i32) (local $px i32) (local $pw i32) (local $v v128) (local $x f32) (local $z f32)
    (local.set $rowBytes (i32.shl (local.get $H) (i32.const 2)))
    (local.set $vecBytes (i32.and (local.get $rowBytes) (i32.const -16)))
    (block $done (loop $rowsLoop
      (br_if $done (i32.ge_u (local.get $m) (local.get $M)))
      (local.set $row (i32.load (i32.add (local.get $idx) (i32.shl (local.get $m) (i32.const 2)))))
      (if (i32.ge_u (local.get $row) (local.get $R)) (then (return (local.get $m))))
      (local.set $pt (i32.add (local.get $T) (i32.mul (local.get $row) (local.get $rowBytes))))
      (local.set $po (i32.add (local.get $out) (i32.mul (local.get $m) (local.get $rowBytes))))
      (local.set $px (i32.add (local.get $X) (i32.shl (i32.mul (local.get $m) (local.get $K)) (i32.const 2))))
      (local.set $o (i32.const 0))
      (block $vdone (loop $vec
        (br_if $vdone (i32.ge_u (local.get $o) (local.get $vecBytes)))
        ;; the low-rank term first, then the table: the composition's order (matMul, then add)
        (local.set $v (f32x4.splat (f32.const 0)))
        (local.set $k (i32.const 0))
        (local.set $pw (i32.add (local.get $W) (local.get $o)))
        (block $kdone (loop $ks
          (br_if $kdone (i32.ge_u (local.get $k) (local.get $K)))
          (local.set $v (f32x4.add (local.get $v)
            (f32x4.mul (v128.load32_splat (i32.add (local.get $px) (i32.shl (local.get $k) (i32.const 2)))) (v128.load (local.get $pw)))))
          (local.set $pw (i32.add (local.get $pw) (local.get $rowBytes)))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br $ks)))
        ;; pmax(z, 0) is z < 0 ? 0 : z, so a NaN stays NaN
        (v128.store (i32.add (local.get $po) (local.get $o))
          (f32x4.pmax (f32x4.add (v128.load (i32.add (local.get $pt) (local.get $o))) (local.get $v)) (f32x4.splat (f32.const 0))))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $vec)))
      (block $sdone (loop $scalar
        (br_if $sdone (i32.ge_u (local.get $o) (local.get $rowBytes)))
        (local.set $z (f32.const 0))
        (local.set $k (i32.const 0))
        (local.set $pw (i32.add (local.get $W) (local.get $o)))
        (block $kdone2 (loop $ks2
          (br_if $kdone2 (i32.ge_u (local.get $k) (local.get $K)))
          (local.set $z (f32.add (local.get $z)
            (f32.mul (f32.load (i32.add (local.get $px) (i32.shl (local.get $k) (i32.const 2)))) (f32.load (local.get $pw)))))
          (local.set $pw (i32.add (local.get $pw) (local.get $rowBytes)))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br $ks2)))
        (local.set $z (f32.add (f32.load (i32.add (local.get $pt) (local.get $o))) (local.get $z)))
        (f32.store (i32.add (local.get $po) (local.get $o))
          (select (f32.const 0) (local.get $z) (f32.lt (local.get $z) (f32.const 0))))
        (local.set $o (i32.add (local.get $o) (i32.const 4)))
        (br $scalar)))
      (local.set $m (i32.add (local.get $m) (i32.const 1)))
      (br $rowsLoop)))
    (i32.const -1))

  ;; gather_affine_relu's gradient from dy and its output y [M, H]: with dz = dy where y > 0 (else 0),
  ;; dT[idx[m]] += dz[m] (dT [R, H], zeroed here), dX[m,k] = dz[m]·W[k], dW[k] = Σ_m X[m,k]·dz[m] into float64
  ;; [K, H] (dW64). Scratch: H float32 (one row of dz) then K·H float32 (dW's partial sums over blocks of 32
  ;; rows, folded into float64 as col_sums). Returns −1, or the first m whose index is outside [0, R).
  (func (export "gather_affine_relu_grad")
    (param $dy i32) (param $y i32) (param $idx i32) (param $X i32) (param $W i32) (param $M i32) (param $K i32) (param $H i32) (param $R i32)
    (param $dT i32) (param $dX i32) (param $scratch i32) (param $dW64 i32)
    (result i32)
    (local $m i32) (local $k i32) (local $o i32) (local $end i32) (local $row i32) (local $rowBytes i32) (local $vecBytes i32)
    (local $acc i32) (local $pd i32) (local $py i32) (local $pt i32) (local $px i32) (local $pw i32) (local $pa i32)
    (local $dz v128) (local $s v128) (local $xk v128) (local $xs f32) (local $ss f32) (local $d f32)
    (local.set $rowBytes (i32.shl (local.get $H) (i32.const 2)))
    (local.set $vecBytes (i32.and (local.get $rowBytes) (i32.const -16)))
    (local.set $acc (i32.add (local.get $scratch) (local.get $rowBytes)))
    (memory.fill (local.get $dT) (i32.const 0) (i32.mul (local.get $R) (local.get $rowBytes)))
    (memory.fill (local.get $dW64) (i32.const 0) (i32.shl (i32.mul (local.get $K) (local.get $H)) (i32.const 3)))
    (block $done (loop $blocks
      (br_if $done (i32.ge_u (local.get $m) (local.get $M)))
      (local.set $end (i32.add (local.get $m) (i32.const 32)))
      (if (i32.gt_u (local.get $end) (local.get $M)) (then (local.set $end (local.get $M))))
      (memory.fill (local.get $acc) (i32.const 0) (i32.mul (local.get $K) (local.get $rowBytes)))
      (loop $rowsLoop
        (local.set $row (i32.load (i32.add (local.get $idx) (i32.shl (local.get $m) (i32.const 2)))))
        (if (i32.ge_u (local.get $row) (local.get $R)) (then (return (local.get $m))))
        (local.set $pd (i32.add (local.get $dy) (i32.mul (local.get $m) (local.get $rowBytes))))
        (local.set $py (i32.add (local.get $y) (i32.mul (local.get $m) (local.get $rowBytes))))
        (local.set $pt (i32.add (local.get $dT) (i32.mul (local.get $row) (local.get $rowBytes))))
        (local.set $px (i32.add (local.get $X) (i32.shl (i32.mul (local.get $m) (local.get $K)) (i32.const 2))))
        ;; dz for the row, into the scratch row and onto the table's gradient
        (local.set $o (i32.const 0))
        (block $vdone (loop $vec
          (br_if $vdone (i32.ge_u (local.get $o) (local.get $vecBytes)))
          (local.set $dz (v128.and (v128.load (i32.add (local.get $pd) (local.get $o)))
            (f32x4.gt (v128.load (i32.add (local.get $py) (local.get $o))) (f32x4.splat (f32.const 0)))))
          (v128.store (i32.add (local.get $scratch) (local.get $o)) (local.get $dz))
          (v128.store (i32.add (local.get $pt) (local.get $o)) (f32x4.add (v128.load (i32.add (local.get $pt) (local.get $o))) (local.get $dz)))
          (local.set $o (i32.add (local.get $o) (i32.const 16)))
          (br $vec)))
        (block $sdone (loop $scalar
          (br_if $sdone (i32.ge_u (local.get $o) (local.get $rowBytes)))
          (local.set $d (select (f32.load (i32.add (local.get $pd) (local.get $o))) (f32.const 0)
            (f32.gt (f32.load (i32.add (local.get $py) (local.get $o))) (f32.const 0))))
          (f32.store (i32.add (local.get $scratch) (local.get $o)) (local.get $d))
          (f32.store (i32.add (local.get $pt) (local.get $o)) (f32.add (f32.load (i32.add (local.get $pt) (local.get $o))) (local.get $d)))
          (local.set $o (i32.add (local.get $o) (i32.const 4)))
          (br $scalar)))
        ;; per k: dX[m,k] = dz·W[k], and X[m,k]·dz onto dW's partial sums
        (local.set $k (i32.const 0))
        (block $kdone (loop $ks
          (br_if $kdone (i32.ge_u (local.get $k) (local.get $K)))
          (local.set $xs (f32.load (i32.add (local.get $px) (i32.shl (local.get $k) (i32.const 2)))))
          (local.set $xk (f32x4.splat (local.get $xs)))
          (local.set $pw (i32.add (local.get $W) (i32.mul (local.get $k) (local.get $rowBytes))))
          (local.set $pa (i32.add (local.get $acc) (i32.mul (local.get $k) (local.get $rowBytes))))
          (local.set $s (f32x4.splat (f32.const 0)))
          (local.set $o (i32.const 0))
          (block $v2done (loop $vec2
            (br_if $v2done (i32.ge_u (local.get $o) (local.get $vecBytes)))
            (local.set $dz (v128.load (i32.add (local.get $scratch) (local.get $o))))
            (local.set $s (f32x4.add (local.get $s) (f32x4.mul (local.get $dz) (v128.load (i32.add (local.get $pw) (local.get $o))))))
            (v128.store (i32.add (local.get $pa) (local.get $o))
              (f32x4.add (v128.load (i32.add (local.get $pa) (local.get $o))) (f32x4.mul (local.get $xk) (local.get $dz))))
            (local.set $o (i32.add (local.get $o) (i32.const 16)))
            (br $vec2)))
          (local.set $ss (f32.demote_f64 (call $hsum (local.get $s))))
          (block $s2done (loop $scalar2
            (br_if $s2done (i32.ge_u (local.get $o) (local.get $rowBytes)))
            (local.set $d (f32.load (i32.add (local.get $scratch) (local.get $o))))
            (local.set $ss (f32.add (local.get $ss) (f32.mul (local.get $d) (f32.load (i32.add (local.get $pw) (local.get $o))))))
            (f32.store (i32.add (local.get $pa) (local.get $o))
              (f32.add (f32.load (i32.add (local.get $pa) (local.get $o))) (f32.mul (local.get $xs) (local.get $d))))
            (local.set $o (i32.add (local.get $o) (i32.const 4)))
            (br $scalar2)))
          (f32.store (i32.add (local.get $dX) (i32.shl (i32.add (i32.mul (local.get $m) (local.get $K)) (local.get $k)) (i32.const 2))) (local.get $ss))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br $ks)))
        (local.set $m (i32.add (local.get $m) (i32.const 1)))
        (br_if $rowsLoop (i32.lt_u (local.get $m) (local.get $end))))
      ;; fold the block's float32 partials into dW's float64 sums
      (local.set $o (i32.const 0))
      (block $fdone (loop $fold
        (br_if $fdone (i32.ge_u (local.get $o) (i32.mul (local.get $K) (local.get $rowBytes))))
        (f64.store (i32.add (local.get $dW64) (i32.shl (local.get $o) (i32.const 1)))
          (f64.add (f64.load (i32.add (local.get $dW64) (i32.shl (local.get $o) (i32.const 1))))
                   (f64.promote_f32 (f32.load (i32.add (local.get $acc) (local.get $o))))))
        (local.set $o (i32.add (local.get $o) (i32.const 4)))
        (br $fold)))
      (br $blocks)))
    (i32.const -1))

  ;; acc[c..c+4) (float64) += the four lanes of v
  (func $add_lanes (param $pa i32) (param $v v128)
    (f64.store (local.get $pa) (f64.add (f64.load (local.get $pa)) (f64.promote_f32 (f32x4.extract_lane 0 (local.get $v)))))
    (f64.store offset=8 (local.get $pa) (f64.add (f64.load offset=8 (local.get $pa)) (f64.promote_f32 (f32x4.extract_lane 1 (local.get $v)))))
    (f64.store offset=16 (local.get $pa) (f64.add (f64.load offset=16 (local.get $pa)) (f64.promote_f32 (f32x4.extract_lane 2 (local.get $v)))))
    (f64.store offset=24 (local.get $pa) (f64.add (f64.load offset=24 (local.get $pa)) (f64.promote_f32 (f32x4.extract_lane 3 (local.get $v))))))

  ;; A depthwise filter gradient's row of one tap: acc[c] += Σ_p x[p, c]·dy[p, c] over n pixels, float64 acc
  ;; [C]; x's pixel p at x + p·xStep bytes (the stride), dy's at dy + p·4C. Channels go eight at a time (two
  ;; independent sums), then four, then one; each row's float32 sums are added into float64.
  (func (export "dw_filter_row") (param $x i32) (param $dy i32) (param $n i32) (param $xStep i32) (param $C i32) (param $acc i32)
    (local $o i32) (local $p i32) (local $px i32) (local $pd i32) (local $rowBytes i32) (local $s0 v128) (local $s1 v128) (local $ss f32)
    (local.set $rowBytes (i32.shl (local.get $C) (i32.const 2)))
    (block $d8 (loop $c8
      (br_if $d8 (i32.gt_u (i32.add (local.get $o) (i32.const 32)) (local.get $rowBytes)))
      (local.set $s0 (f32x4.splat (f32.const 0)))
      (local.set $s1 (f32x4.splat (f32.const 0)))
      (local.set $px (i32.add (local.get $x) (local.get $o)))
      (local.set $pd (i32.add (local.get $dy) (local.get $o)))
      (local.set $p (i32.const 0))
      (block $pd8 (loop $p8
        (br_if $pd8 (i32.ge_u (local.get $p) (local.get $n)))
        (local.set $s0 (f32x4.add (local.get $s0) (f32x4.mul (v128.load (local.get $px)) (v128.load (local.get $pd)))))
        (local.set $s1 (f32x4.add (local.get $s1) (f32x4.mul (v128.load offset=16 (local.get $px)) (v128.load offset=16 (local.get $pd)))))
        (local.set $px (i32.add (local.get $px) (local.get $xStep)))
        (local.set $pd (i32.add (local.get $pd) (local.get $rowBytes)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $p8)))
      (call $add_lanes (i32.add (local.get $acc) (i32.shl (local.get $o) (i32.const 1))) (local.get $s0))
      (call $add_lanes (i32.add (local.get $acc) (i32.shl (i32.add (local.get $o) (i32.const 16)) (i32.const 1))) (local.get $s1))
      (local.set $o (i32.add (local.get $o) (i32.const 32)))
      (br $c8)))
    (if (i32.le_u (i32.add (local.get $o) (i32.const 16)) (local.get $rowBytes)) (then
      (local.set $s0 (f32x4.splat (f32.const 0)))
      (local.set $px (i32.add (local.get $x) (local.get $o)))
      (local.set $pd (i32.add (local.get $dy) (local.get $o)))
      (local.set $p (i32.const 0))
      (block $pd4 (loop $p4
        (br_if $pd4 (i32.ge_u (local.get $p) (local.get $n)))
        (local.set $s0 (f32x4.add (local.get $s0) (f32x4.mul (v128.load (local.get $px)) (v128.load (local.get $pd)))))
        (local.set $px (i32.add (local.get $px) (local.get $xStep)))
        (local.set $pd (i32.add (local.get $pd) (local.get $rowBytes)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $p4)))
      (call $add_lanes (i32.add (local.get $acc) (i32.shl (local.get $o) (i32.const 1))) (local.get $s0))
      (local.set $o (i32.add (local.get $o) (i32.const 16)))))
    (block $d1 (loop $c1
      (br_if $d1 (i32.ge_u (local.get $o) (local.get $rowBytes)))
      (local.set $ss (f32.const 0))
      (local.set $px (i32.add (local.get $x) (local.get $o)))
      (local.set $pd (i32.add (local.get $dy) (local.get $o)))
      (local.set $p (i32.const 0))
      (block $pd1 (loop $p1
        (br_if $pd1 (i32.ge_u (local.get $p) (local.get $n)))
        (local.set $ss (f32.add (local.get $ss) (f32.mul (f32.load (local.get $px)) (f32.load (local.get $pd)))))
        (local.set $px (i32.add (local.get $px) (local.get $xStep)))
        (local.set $pd (i32.add (local.get $pd) (local.get $rowBytes)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $p1)))
      (f64.store (i32.add (local.get $acc) (i32.shl (local.get $o) (i32.const 1)))
        (f64.add (f64.load (i32.add (local.get $acc) (i32.shl (local.get $o) (i32.const 1)))) (f64.promote_f32 (local.get $ss))))
      (local.set $o (i32.add (local.get $o) (i32.const 4)))
      (br $c1))))

  ;; A ReLU layer's backward step: dz = dy where y > 0 (else 0) over [rows, C], and db[c] = Σ_r dz[r, c] into
  ;; float64 [C] through C float32 of scratch (acc) per block of 32 rows, as col_sums.
  (func (export "relu_grad_col_sums")
    (param $dy i32) (param $y i32) (param $rows i32) (param $C i32) (param $dz i32) (param $acc i32) (param $db i32)
    (local $r i32) (local $end i32) (local $o i32) (local $rowBytes i32) (local $vecBytes i32) (local $base i32) (local $v v128) (local $d f32)
    (local.set $rowBytes (i32.shl (local.get $C) (i32.const 2)))
    (local.set $vecBytes (i32.and (local.get $rowBytes) (i32.const -16)))
    (memory.fill (local.get $db) (i32.const 0) (i32.shl (local.get $C) (i32.const 3)))
    (block $done (loop $blocks
      (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $end (i32.add (local.get $r) (i32.const 32)))
      (if (i32.gt_u (local.get $end) (local.get $rows)) (then (local.set $end (local.get $rows))))
      (memory.fill (local.get $acc) (i32.const 0) (local.get $rowBytes))
      (loop $rowsLoop
        (local.set $base (i32.mul (local.get $r) (local.get $rowBytes)))
        (local.set $o (i32.const 0))
        (block $vdone (loop $vec
          (br_if $vdone (i32.ge_u (local.get $o) (local.get $vecBytes)))
          (local.set $v (v128.and (v128.load (i32.add (local.get $dy) (i32.add (local.get $base) (local.get $o))))
            (f32x4.gt (v128.load (i32.add (local.get $y) (i32.add (local.get $base) (local.get $o)))) (f32x4.splat (f32.const 0)))))
          (v128.store (i32.add (local.get $dz) (i32.add (local.get $base) (local.get $o))) (local.get $v))
          (v128.store (i32.add (local.get $acc) (local.get $o)) (f32x4.add (v128.load (i32.add (local.get $acc) (local.get $o))) (local.get $v)))
          (local.set $o (i32.add (local.get $o) (i32.const 16)))
          (br $vec)))
        (block $sdone (loop $scalar
          (br_if $sdone (i32.ge_u (local.get $o) (local.get $rowBytes)))
          (local.set $d (select (f32.load (i32.add (local.get $dy) (i32.add (local.get $base) (local.get $o)))) (f32.const 0)
            (f32.gt (f32.load (i32.add (local.get $y) (i32.add (local.get $base) (local.get $o)))) (f32.const 0))))
          (f32.store (i32.add (local.get $dz) (i32.add (local.get $base) (local.get $o))) (local.get $d))
          (f32.store (i32.add (local.get $acc) (local.get $o)) (f32.add (f32.load (i32.add (local.get $acc) (local.get $o))) (local.get $d)))
          (local.set $o (i32.add (local.get $o) (i32.const 4)))
          (br $scalar)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br_if $rowsLoop (i32.lt_u (local.get $r) (local.get $end))))
      (local.set $o (i32.const 0))
      (block $fdone (loop $fold
        (br_if $fdone (i32.ge_u (local.get $o) (local.get $rowBytes)))
        (f64.store (i32.add (local.get $db) (i32.shl (local.get $o) (i32.const 1)))
          (f64.add (f64.load (i32.add (local.get $db) (i32.shl (local.get $o) (i32.const 1))))
                   (f64.promote_f32 (f32.load (i32.add (local.get $acc) (local.get $o))))))
        (local.set $o (i32.add (local.get $o) (i32.const 4)))
        (br $fold)))
      (br $blocks))))

  ;; A weighted ensemble of a linear head: out[m] = Σ_n weight[n·M + m]·(a[n·M + m]·w + b) for rows
  ;; a = φ(x + pre) of x [N·M, K] (pre [K] the previous layer's bias; φ a ReLU when relu ≠ 0, else identity),
  ;; w [K], weight [N, M] (a LIIF query's four neighbours through the MLP's last layer, blended by area).
  ;; The rows' products are float64 lane sums; the blend adds in float32, n in order (the composition's sum).
  (func (export "ensemble_dot")
    (param $x i32) (param $pre i32) (param $relu i32) (param $w i32) (param $b f32) (param $weight i32) (param $N i32) (param $M i32) (param $K i32)
    (param $out i32)
    (local $m i32) (local $n i32) (local $r i32) (local $o i32) (local $rowBytes i32) (local $vecBytes i32) (local $px i32)
    (local $v v128) (local $av v128) (local $a f32) (local $d f32) (local $acc f32)
    (local.set $rowBytes (i32.shl (local.get $K) (i32.const 2)))
    (local.set $vecBytes (i32.and (local.get $rowBytes) (i32.const -16)))
    (block $done (loop $ms
      (br_if $done (i32.ge_u (local.get $m) (local.get $M)))
      (local.set $acc (f32.const 0))
      (local.set $n (i32.const 0))
      (block $ndone (loop $ns
        (br_if $ndone (i32.ge_u (local.get $n) (local.get $N)))
        (local.set $r (i32.add (i32.mul (local.get $n) (local.get $M)) (local.get $m)))
        (local.set $px (i32.add (local.get $x) (i32.mul (local.get $r) (local.get $rowBytes))))
        (local.set $v (f32x4.splat (f32.const 0)))
        (local.set $o (i32.const 0))
        (block $vdone (loop $vec
          (br_if $vdone (i32.ge_u (local.get $o) (local.get $vecBytes)))
          (local.set $av (f32x4.add (v128.load (i32.add (local.get $px) (local.get $o))) (v128.load (i32.add (local.get $pre) (local.get $o)))))
          ;; pmax(a, 0) is a < 0 ? 0 : a, so a NaN stays NaN
          (if (local.get $relu) (then (local.set $av (f32x4.pmax (local.get $av) (f32x4.splat (f32.const 0))))))
          (local.set $v (f32x4.add (local.get $v) (f32x4.mul (local.get $av) (v128.load (i32.add (local.get $w) (local.get $o))))))
          (local.set $o (i32.add (local.get $o) (i32.const 16)))
          (br $vec)))
        (local.set $d (f32.demote_f64 (call $hsum (local.get $v))))
        (block $sdone (loop $scalar
          (br_if $sdone (i32.ge_u (local.get $o) (local.get $rowBytes)))
          (local.set $a (f32.add (f32.load (i32.add (local.get $px) (local.get $o))) (f32.load (i32.add (local.get $pre) (local.get $o)))))
          (if (local.get $relu) (then (local.set $a (select (f32.const 0) (local.get $a) (f32.lt (local.get $a) (f32.const 0))))))
          (local.set $d (f32.add (local.get $d) (f32.mul (local.get $a) (f32.load (i32.add (local.get $w) (local.get $o))))))
          (local.set $o (i32.add (local.get $o) (i32.const 4)))
          (br $scalar)))
        (local.set $acc (f32.add (local.get $acc)
          (f32.mul (f32.load (i32.add (local.get $weight) (i32.shl (local.get $r) (i32.const 2)))) (f32.add (local.get $d) (local.get $b)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $ns)))
      (f32.store (i32.add (local.get $out) (i32.shl (local.get $m) (i32.const 2))) (local.get $acc))
      (local.set $m (i32.add (local.get $m) (i32.const 1)))
      (br $ms))))

  ;; ensemble_dot's gradient from ds [M]: with g = ds[m]·weight[r] for row r = n·M + m, dx[r] = g·w·φ'(x + pre)
  ;; (the pre-activation's gradient, also pre's rows), dw = Σ_r g·a[r], db = Σ_r g and dpre = Σ_r dx[r], all
  ;; float64 (dw64 [K], db64 [1], dpre64 [K]) over float32 partial sums of blocks of 32 rows (acc: 2K float32
  ;; of scratch, dw's then dpre's), as col_sums.
  (func (export "ensemble_dot_grad")
    (param $ds i32) (param $x i32) (param $pre i32) (param $relu i32) (param $w i32) (param $weight i32) (param $N i32) (param $M i32) (param $K i32)
    (param $dx i32) (param $acc i32) (param $dw64 i32) (param $db64 i32) (param $dpre64 i32)
    (local $r i32) (local $rows i32) (local $end i32) (local $o i32) (local $rowBytes i32) (local $vecBytes i32) (local $px i32) (local $pd i32)
    (local $accPre i32) (local $g f32) (local $gv v128) (local $gs f32) (local $av v128) (local $dv v128) (local $a f32) (local $d f32)
    (local.set $rowBytes (i32.shl (local.get $K) (i32.const 2)))
    (local.set $vecBytes (i32.and (local.get $rowBytes) (i32.const -16)))
    (local.set $accPre (i32.add (local.get $acc) (local.get $rowBytes)))
    (local.set $rows (i32.mul (local.get $N) (local.get $M)))
    (memory.fill (local.get $dw64) (i32.const 0) (i32.shl (local.get $K) (i32.const 3)))
    (memory.fill (local.get $dpre64) (i32.const 0) (i32.shl (local.get $K) (i32.const 3)))
    (f64.store (local.get $db64) (f64.const 0))
    (block $done (loop $blocks
      (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $end (i32.add (local.get $r) (i32.const 32)))
      (if (i32.gt_u (local.get $end) (local.get $rows)) (then (local.set $end (local.get $rows))))
      (memory.fill (local.get $acc) (i32.const 0) (i32.shl (local.get $rowBytes) (i32.const 1)))
      (local.set $gs (f32.const 0))
      (loop $rowsLoop
        (local.set $g (f32.mul
          (f32.load (i32.add (local.get $ds) (i32.shl (i32.rem_u (local.get $r) (local.get $M)) (i32.const 2))))
          (f32.load (i32.add (local.get $weight) (i32.shl (local.get $r) (i32.const 2))))))
        (local.set $gv (f32x4.splat (local.get $g)))
        (local.set $gs (f32.add (local.get $gs) (local.get $g)))
        (local.set $px (i32.add (local.get $x) (i32.mul (local.get $r) (local.get $rowBytes))))
        (local.set $pd (i32.add (local.get $dx) (i32.mul (local.get $r) (local.get $rowBytes))))
        (local.set $o (i32.const 0))
        (block $vdone (loop $vec
          (br_if $vdone (i32.ge_u (local.get $o) (local.get $vecBytes)))
          (local.set $av (f32x4.add (v128.load (i32.add (local.get $px) (local.get $o))) (v128.load (i32.add (local.get $pre) (local.get $o)))))
          (local.set $dv (f32x4.mul (local.get $gv) (v128.load (i32.add (local.get $w) (local.get $o)))))
          (if (local.get $relu) (then
            (local.set $dv (v128.and (local.get $dv) (f32x4.gt (local.get $av) (f32x4.splat (f32.const 0)))))
            (local.set $av (f32x4.pmax (local.get $av) (f32x4.splat (f32.const 0))))))
          (v128.store (i32.add (local.get $pd) (local.get $o)) (local.get $dv))
          (v128.store (i32.add (local.get $acc) (local.get $o))
            (f32x4.add (v128.load (i32.add (local.get $acc) (local.get $o))) (f32x4.mul (local.get $gv) (local.get $av))))
          (v128.store (i32.add (local.get $accPre) (local.get $o)) (f32x4.add (v128.load (i32.add (local.get $accPre) (local.get $o))) (local.get $dv)))
          (local.set $o (i32.add (local.get $o) (i32.const 16)))
          (br $vec)))
        (block $sdone (loop $scalar
          (br_if $sdone (i32.ge_u (local.get $o) (local.get $rowBytes)))
          (local.set $a (f32.add (f32.load (i32.add (local.get $px) (local.get $o))) (f32.load (i32.add (local.get $pre) (local.get $o)))))
          (local.set $d (f32.mul (local.get $g) (f32.load (i32.add (local.get $w) (local.get $o)))))
          (if (local.get $relu) (then
            (local.set $d (select (local.get $d) (f32.const 0) (f32.gt (local.get $a) (f32.const 0))))
            (local.set $a (select (f32.const 0) (local.get $a) (f32.lt (local.get $a) (f32.const 0))))))
          (f32.store (i32.add (local.get $pd) (local.get $o)) (local.get $d))
          (f32.store (i32.add (local.get $acc) (local.get $o))
            (f32.add (f32.load (i32.add (local.get $acc) (local.get $o))) (f32.mul (local.get $g) (local.get $a))))
          (f32.store (i32.add (local.get $accPre) (local.get $o)) (f32.add (f32.load (i32.add (local.get $accPre) (local.get $o))) (local.get $d)))
          (local.set $o (i32.add (local.get $o) (i32.const 4)))
          (br $scalar)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br_if $rowsLoop (i32.lt_u (local.get $r) (local.get $end))))
      ;; fold the block's partial sums into float64
      (local.set $o (i32.const 0))
      (block $fdone (loop $fold
        (br_if $fdone (i32.ge_u (local.get $o) (local.get $rowBytes)))
        (f64.store (i32.add (local.get $dw64) (i32.shl (local.get $o) (i32.const 1)))
          (f64.add (f64.load (i32.add (local.get $dw64) (i32.shl (local.get $o) (i32.const 1))))
                   (f64.promote_f32 (f32.load (i32.add (local.get $acc) (local.get $o))))))
        (f64.store (i32.add (local.get $dpre64) (i32.shl (local.get $o) (i32.const 1)))
          (f64.add (f64.load (i32.add (local.get $dpre64) (i32.shl (local.get $o) (i32.const 1))))
                   (f64.promote_f32 (f32.load (i32.add (local.get $accPre) (local.get $o))))))
        (local.set $o (i32.add (local.get $o) (i32.const 4)))
        (br $fold)))
      (f64.store (local.get $db64) (f64.add (f64.load (local.get $db64)) (f64.promote_f32 (local.get $gs))))
      (br $blocks))))

  ;; AdamW over n floats (PyTorch's update, decoupled decay): m1 = β1·m + (1 − β1)·g, v1 = β2·v + (1 − β2)·g²,
  ;; p1 = decay·p − lr·(m1/c1)/(√(v1/c2) + ε); c1, c2 the bias corrections, decay = 1 − lr·λ. 1 − β1 and
  ;; 1 − β2 come in as ob1, ob2 (from float64: 1 − float32(0.999) is 1.3e-5 off 0.001).
  (func (export "adamw")
    (param $p i32) (param $g i32) (param $m i32) (param $v i32) (param $n i32)
    (param $b1 f32) (param $ob1 f32) (param $b2 f32) (param $ob2 f32) (param $c1 f32) (param $c2 f32) (param $eps f32) (param $lr f32) (param $decay f32)
    (param $p1 i32) (param $m1 i32) (param $v1 i32)
    (local $o i32) (local $end i32) (local $vecEnd i32) (local $gv v128) (local $mv v128) (local $vv v128)
    (local $gs f32) (local $ms f32) (local $vs f32)
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (local.set $vecEnd (i32.and (local.get $end) (i32.const -16)))
    (block $vdone (loop $vec
      (br_if $vdone (i32.ge_u (local.get $o) (local.get $vecEnd)))
      (local.set $gv (v128.load (i32.add (local.get $g) (local.get $o))))
      (local.set $mv (f32x4.add (f32x4.mul (v128.load (i32.add (local.get $m) (local.get $o))) (f32x4.splat (local.get $b1)))
        (f32x4.mul (local.get $gv) (f32x4.splat (local.get $ob1)))))
      (local.set $vv (f32x4.add (f32x4.mul (v128.load (i32.add (local.get $v) (local.get $o))) (f32x4.splat (local.get $b2)))
        (f32x4.mul (f32x4.mul (local.get $gv) (local.get $gv)) (f32x4.splat (local.get $ob2)))))
      (v128.store (i32.add (local.get $m1) (local.get $o)) (local.get $mv))
      (v128.store (i32.add (local.get $v1) (local.get $o)) (local.get $vv))
      (v128.store (i32.add (local.get $p1) (local.get $o))
        (f32x4.sub (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $o))) (f32x4.splat (local.get $decay)))
          (f32x4.mul (f32x4.div (f32x4.div (local.get $mv) (f32x4.splat (local.get $c1)))
            (f32x4.add (f32x4.sqrt (f32x4.div (local.get $vv) (f32x4.splat (local.get $c2)))) (f32x4.splat (local.get $eps))))
            (f32x4.splat (local.get $lr)))))
      (local.set $o (i32.add (local.get $o) (i32.const 16)))
      (br $vec)))
    (block $sdone (loop $scalar
      (br_if $sdone (i32.ge_u (local.get $o) (local.get $end)))
      (local.set $gs (f32.load (i32.add (local.get $g) (local.get $o))))
      (local.set $ms (f32.add (f32.mul (f32.load (i32.add (local.get $m) (local.get $o))) (local.get $b1))
        (f32.mul (local.get $gs) (local.get $ob1))))
      (local.set $vs (f32.add (f32.mul (f32.load (i32.add (local.get $v) (local.get $o))) (local.get $b2))
        (f32.mul (f32.mul (local.get $gs) (local.get $gs)) (local.get $ob2))))
      (f32.store (i32.add (local.get $m1) (local.get $o)) (local.get $ms))
      (f32.store (i32.add (local.get $v1) (local.get $o)) (local.get $vs))
      (f32.store (i32.add (local.get $p1) (local.get $o))
        (f32.sub (f32.mul (f32.load (i32.add (local.get $p) (local.get $o))) (local.get $decay))
          (f32.mul (f32.div (f32.div (local.get $ms) (local.get $c1)) (f32.add (f32.sqrt (f32.div (local.get $vs) (local.get $c2))) (local.get $eps)))
            (local.get $lr))))
      (local.set $o (i32.add (local.get $o) (i32.const 4)))
      (br $scalar))))

  ;; out = a·x + b·y over n floats (the mean teacher's update, b = 1 − a from float64)
  (func (export "ema")
    (param $x i32) (param $y i32) (param $n i32) (param $a f32) (param $b f32) (param $out i32)
    (local $o i32) (local $end i32) (local $vecEnd i32)
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (local.set $vecEnd (i32.and (local.get $end) (i32.const -16)))
    (block $vdone (loop $vec
      (br_if $vdone (i32.ge_u (local.get $o) (local.get $vecEnd)))
      (v128.store (i32.add (local.get $out) (local.get $o))
        (f32x4.add (f32x4.mul (v128.load (i32.add (local.get $x) (local.get $o))) (f32x4.splat (local.get $a)))
          (f32x4.mul (v128.load (i32.add (local.get $y) (local.get $o))) (f32x4.splat (local.get $b)))))
      (local.set $o (i32.add (local.get $o) (i32.const 16)))
      (br $vec)))
    (block $sdone (loop $scalar
      (br_if $sdone (i32.ge_u (local.get $o) (local.get $end)))
      (f32.store (i32.add (local.get $out) (local.get $o))
        (f32.add (f32.mul (f32.load (i32.add (local.get $x) (local.get $o))) (local.get $a))
          (f32.mul (f32.load (i32.add (local.get $y) (local.get $o))) (local.get $b))))
      (local.set $o (i32.add (local.get $o) (i32.const 4)))
      (br $scalar))))

  ;; Softmax over rows of K classes (19 for Cityscapes) runs four rows to a vector, whatever K is: a group's
  ;; columns are first gathered into K vectors in scratch (v[k] = x[r..r+3, k]). The exponentials are written
  ;; out, not called: V8 does not inline wasm calls, and a call a vector cost more than the maths here.

  ;; Gather the four rows from p (row stride s bytes) as K vectors into v.
  (func $gather4 (param $p i32) (param $s i32) (param $K i32) (param $v i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $v) (i32.shl (local.get $K) (i32.const 4))))
    (block $done (loop $k
      (br_if $done (i32.ge_u (local.get $v) (local.get $end)))
      (v128.store (local.get $v)
        (f32x4.replace_lane 3
          (f32x4.replace_lane 2
            (f32x4.replace_lane 1 (f32x4.splat (f32.load (local.get $p))) (f32.load (i32.add (local.get $p) (local.get $s))))
            (f32.load (i32.add (local.get $p) (i32.shl (local.get $s) (i32.const 1)))))
          (f32.load (i32.add (local.get $p) (i32.mul (local.get $s) (i32.const 3))))))
      (local.set $p (i32.add (local.get $p) (i32.const 4)))
      (local.set $v (i32.add (local.get $v) (i32.const 16)))
      (br $k))))

  ;; v[k] ← e^(v[k] − m) for K vectors with every lane ≤ m's (a softmax's terms), returning their sum. The
  ;; exponential is 2^u (u ≥ −126: smaller terms become 2^−126, which no sum of ≥ 1 notices): 2^round(u) by the
  ;; exponent bits times Cephes' exp2f polynomial on [−½, ½]. round(u) comes from adding 1.5·2^23 (the sum's low
  ;; bits are the rounded integer), and the clamp is a pmax: single instructions, where nearest, trunc_sat and
  ;; NaN-propagating max each lower to several on x64. A NaN lane stays NaN (pmax keeps its first operand).
  (func $exp_sub (param $v i32) (param $K i32) (param $m v128) (result v128)
    (local $end i32) (local $u v128) (local $t v128) (local $f v128) (local $g v128) (local $sum v128)
    (local.set $end (i32.add (local.get $v) (i32.shl (local.get $K) (i32.const 4))))
    (block $done (loop $k
      (br_if $done (i32.ge_u (local.get $v) (local.get $end)))
      (local.set $u (f32x4.pmax
        (f32x4.mul (f32x4.sub (v128.load (local.get $v)) (local.get $m)) (f32x4.splat (f32.const 1.4426950408889634)))
        (f32x4.splat (f32.const -126))))
      (local.set $t (f32x4.add (local.get $u) (f32x4.splat (f32.const 12582912))))
      (local.set $f (f32x4.sub (local.get $u) (f32x4.sub (local.get $t) (f32x4.splat (f32.const 12582912)))))
      (local.set $g (f32x4.splat (f32.const 1.535336188319500e-4)))
      (local.set $g (f32x4.add (f32x4.mul (local.get $g) (local.get $f)) (f32x4.splat (f32.const 1.339887440266574e-3))))
      (local.set $g (f32x4.add (f32x4.mul (local.get $g) (local.get $f)) (f32x4.splat (f32.const 9.618437357674640e-3))))
      (local.set $g (f32x4.add (f32x4.mul (local.get $g) (local.get $f)) (f32x4.splat (f32.const 5.550332471162809e-2))))
      (local.set $g (f32x4.add (f32x4.mul (local.get $g) (local.get $f)) (f32x4.splat (f32.const 2.402264791363012e-1))))
      (local.set $g (f32x4.add (f32x4.mul (local.get $g) (local.get $f)) (f32x4.splat (f32.const 6.931472028550421e-1))))
      (local.set $g (f32x4.add (f32x4.mul (local.get $g) (local.get $f)) (f32x4.splat (f32.const 1))))
      ;; × 2^n: the bits of t are 0x4B400000 + n; n + 127 into the exponent
      (local.set $g (f32x4.mul (local.get $g)
        (i32x4.shl (i32x4.add (local.get $t) (i32x4.splat (i32.const -1262485377))) (i32.const 23))))
      (v128.store (local.get $v) (local.get $g))
      (local.set $sum (f32x4.add (local.get $sum) (local.get $g)))
      (local.set $v (i32.add (local.get $v) (i32.const 16)))
      (br $k)))
    (local.get $sum))

  ;; ln s for s ≥ 1, four lanes: s = 2^e·a with a in [√½, √2), ln a = 2·atanh z = 2(z + z³/3 + … + z⁹/9) for
  ;; z = (a − 1)/(a + 1), |z| ≤ 0.172 (truncation ~3e-10). A NaN or ∞ lane gives NaN.
  (func $log_ge1 (param $s v128) (result v128)
    (local $e v128) (local $a v128) (local $big v128) (local $z v128) (local $z2 v128) (local $p v128)
    (local.set $e (i32x4.sub (i32x4.shr_u (local.get $s) (i32.const 23)) (i32x4.splat (i32.const 127))))
    (local.set $a (v128.or (v128.and (local.get $s) (i32x4.splat (i32.const 0x007FFFFF))) (i32x4.splat (i32.const 0x3F800000))))
    ;; a > √2: halve it (exponent bits − 1), e + 1
    (local.set $big (f32x4.gt (local.get $a) (f32x4.splat (f32.const 1.4142135623730951))))
    (local.set $a (i32x4.sub (local.get $a) (v128.and (local.get $big) (i32x4.splat (i32.const 0x00800000)))))
    (local.set $e (i32x4.sub (local.get $e) (local.get $big)))
    (local.set $z (f32x4.div (f32x4.sub (local.get $a) (f32x4.splat (f32.const 1))) (f32x4.add (local.get $a) (f32x4.splat (f32.const 1)))))
    (local.set $z2 (f32x4.mul (local.get $z) (local.get $z)))
    (local.set $p (f32x4.splat (f32.const 0.1111111111111111)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $z2)) (f32x4.splat (f32.const 0.14285714285714285))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $z2)) (f32x4.splat (f32.const 0.2))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $z2)) (f32x4.splat (f32.const 0.3333333333333333))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $z2)) (f32x4.splat (f32.const 1))))
    (f32x4.add
      (f32x4.add (f32x4.mul (f32x4.convert_i32x4_s (local.get $e)) (f32x4.splat (f32.const 0.6931471805599453)))
        (f32x4.mul (f32x4.mul (local.get $z) (local.get $p)) (f32x4.splat (f32.const 2))))
      ;; s − s: 0, or NaN for a NaN or ∞ s
      (f32x4.sub (local.get $s) (local.get $s))))

  ;; One row's cross-entropy from its log-sum-exp l: l − x[label], 0 where the label is outside [0, K) or the
  ;; ignore index (p: the row's first logit).
  (func $ce_row (param $p i32) (param $label i32) (param $K i32) (param $ignore i32) (param $l f32) (result f32)
    (if (result f32) (i32.and (i32.lt_u (local.get $label) (local.get $K)) (i32.ne (local.get $label) (local.get $ignore)))
      (then (f32.sub (local.get $l) (f32.load (i32.add (local.get $p) (i32.shl (local.get $label) (i32.const 2))))))
      (else (f32.const 0))))

  ;; Softmax cross-entropy of the rows of x [rows, K] against int32 labels, rows a multiple of 4: lse[r] = the
  ;; row's log-sum-exp (max m plus ln Σ e^(x − m)) and ce[r] = lse[r] − x[r, label], 0 where the label is ignored.
  ;; A NaN logit makes its row's lse and ce NaN (the max may skip it; its exponential does not). v: 16·K bytes.
  (func (export "softmax_ce")
    (param $x i32) (param $labels i32) (param $rows i32) (param $K i32) (param $ignore i32) (param $ce i32) (param $lse i32) (param $v i32)
    (local $r i32) (local $p i32) (local $stride i32) (local $k i32) (local $end i32) (local $o i32) (local $mx v128) (local $l v128)
    (local.set $stride (i32.shl (local.get $K) (i32.const 2)))
    (local.set $end (i32.add (local.get $v) (i32.shl (local.get $K) (i32.const 4))))
    (block $done (loop $group
      (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $p (i32.add (local.get $x) (i32.mul (local.get $r) (local.get $stride))))
      (call $gather4 (local.get $p) (local.get $stride) (local.get $K) (local.get $v))
      (local.set $mx (v128.load (local.get $v)))
      (local.set $k (i32.add (local.get $v) (i32.const 16)))
      (block $mdone (loop $mk
        (br_if $mdone (i32.ge_u (local.get $k) (local.get $end)))
        (local.set $mx (f32x4.pmax (local.get $mx) (v128.load (local.get $k))))
        (local.set $k (i32.add (local.get $k) (i32.const 16)))
        (br $mk)))
      (local.set $l (f32x4.add (local.get $mx) (call $log_ge1 (call $exp_sub (local.get $v) (local.get $K) (local.get $mx)))))
      (local.set $o (i32.shl (local.get $r) (i32.const 2)))
      (v128.store (i32.add (local.get $lse) (local.get $o)) (local.get $l))
      (f32.store (i32.add (local.get $ce) (local.get $o)) (call $ce_row (local.get $p)
        (i32.load (i32.add (local.get $labels) (local.get $o))) (local.get $K) (local.get $ignore) (f32x4.extract_lane 0 (local.get $l))))
      (f32.store offset=4 (i32.add (local.get $ce) (local.get $o)) (call $ce_row (i32.add (local.get $p) (local.get $stride))
        (i32.load offset=4 (i32.add (local.get $labels) (local.get $o))) (local.get $K) (local.get $ignore) (f32x4.extract_lane 1 (local.get $l))))
      (f32.store offset=8 (i32.add (local.get $ce) (local.get $o)) (call $ce_row (i32.add (local.get $p) (i32.shl (local.get $stride) (i32.const 1)))
        (i32.load offset=8 (i32.add (local.get $labels) (local.get $o))) (local.get $K) (local.get $ignore) (f32x4.extract_lane 2 (local.get $l))))
      (f32.store offset=12 (i32.add (local.get $ce) (local.get $o)) (call $ce_row (i32.add (local.get $p) (i32.mul (local.get $stride) (i32.const 3)))
        (i32.load offset=12 (i32.add (local.get $labels) (local.get $o))) (local.get $K) (local.get $ignore) (f32x4.extract_lane 3 (local.get $l))))
      (local.set $r (i32.add (local.get $r) (i32.const 4)))
      (br $group))))

  ;; dx[r,k] = g[r]·e^(x[r,k] − l[r]) over x [rows, K], rows a multiple of 4 (with l the rows' log-sum-exp, the
  ;; softmax scaled by g: a cross-entropy's gradient before the caller subtracts g[r] at each row's label).
  ;; v: 16·K bytes of scratch.
  (func (export "softmax_scaled") (param $x i32) (param $l i32) (param $g i32) (param $rows i32) (param $K i32) (param $dx i32) (param $v i32)
    (local $r i32) (local $q i32) (local $stride i32) (local $k i32) (local $end i32) (local $gv v128) (local $e v128)
    (local.set $stride (i32.shl (local.get $K) (i32.const 2)))
    (local.set $end (i32.add (local.get $v) (i32.shl (local.get $K) (i32.const 4))))
    (block $done (loop $group
      (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
      (call $gather4 (i32.add (local.get $x) (i32.mul (local.get $r) (local.get $stride))) (local.get $stride) (local.get $K) (local.get $v))
      (drop (call $exp_sub (local.get $v) (local.get $K) (v128.load (i32.add (local.get $l) (i32.shl (local.get $r) (i32.const 2))))))
      (local.set $gv (v128.load (i32.add (local.get $g) (i32.shl (local.get $r) (i32.const 2)))))
      (local.set $q (i32.add (local.get $dx) (i32.mul (local.get $r) (local.get $stride))))
      (local.set $k (local.get $v))
      (block $kdone (loop $kk
        (br_if $kdone (i32.ge_u (local.get $k) (local.get $end)))
        (local.set $e (f32x4.mul (local.get $gv) (v128.load (local.get $k))))
        (f32.store (local.get $q) (f32x4.extract_lane 0 (local.get $e)))
        (f32.store (i32.add (local.get $q) (local.get $stride)) (f32x4.extract_lane 1 (local.get $e)))
        (f32.store (i32.add (local.get $q) (i32.shl (local.get $stride) (i32.const 1))) (f32x4.extract_lane 2 (local.get $e)))
        (f32.store (i32.add (local.get $q) (i32.mul (local.get $stride) (i32.const 3))) (f32x4.extract_lane 3 (local.get $e)))
        (local.set $q (i32.add (local.get $q) (i32.const 4)))
        (local.set $k (i32.add (local.get $k) (i32.const 16)))
        (br $kk)))
      (local.set $r (i32.add (local.get $r) (i32.const 4)))
      (br $group))))

  ;; MaxPoolGrad, NHWC, channels [0, C4) (C4 a multiple of 4; the caller takes the rest): each output pixel's
  ;; gradient goes to the first strict maximum of its window (tfjs's rule: rows, then columns, in order; a NaN
  ;; is never a maximum), four channels a vector, the winners' byte offsets tracked in an i32x4. dx must be
  ;; zero on entry: windows that overlap add into it.
  (func (export "max_pool_grad")
    (param $x i32) (param $dy i32) (param $dx i32) (param $B i32) (param $H i32) (param $W i32) (param $C i32) (param $C4 i32)
    (param $OH i32) (param $OW i32) (param $fh i32) (param $fw i32) (param $sh i32) (param $sw i32) (param $top i32) (param $left i32)
    (local $b i32) (local $oh i32) (local $ow i32) (local $r i32) (local $c i32) (local $o i32)
    (local $r0 i32) (local $r1 i32) (local $c0 i32) (local $c1 i32) (local $rowBytes i32) (local $pix i32) (local $g i32) (local $off i32)
    (local $best v128) (local $at v128) (local $v v128) (local $gt v128) (local $d v128)
    (local.set $rowBytes (i32.shl (local.get $C) (i32.const 2)))
    (local.set $g (local.get $dy))
    (block $bdone (loop $bl
      (br_if $bdone (i32.ge_u (local.get $b) (local.get $B)))
      (local.set $oh (i32.const 0))
      (block $hdone (loop $hl
        (br_if $hdone (i32.ge_u (local.get $oh) (local.get $OH)))
        (local.set $r0 (i32.sub (i32.mul (local.get $oh) (local.get $sh)) (local.get $top)))
        (local.set $r1 (i32.add (local.get $r0) (local.get $fh)))
        (if (i32.lt_s (local.get $r0) (i32.const 0)) (then (local.set $r0 (i32.const 0))))
        (if (i32.gt_s (local.get $r1) (local.get $H)) (then (local.set $r1 (local.get $H))))
        (local.set $ow (i32.const 0))
        (block $wdone (loop $wl
          (br_if $wdone (i32.ge_u (local.get $ow) (local.get $OW)))
          (local.set $c0 (i32.sub (i32.mul (local.get $ow) (local.get $sw)) (local.get $left)))
          (local.set $c1 (i32.add (local.get $c0) (local.get $fw)))
          (if (i32.lt_s (local.get $c0) (i32.const 0)) (then (local.set $c0 (i32.const 0))))
          (if (i32.gt_s (local.get $c1) (local.get $W)) (then (local.set $c1 (local.get $W))))
          (local.set $o (i32.const 0))
          (block $odone (loop $ol
            (br_if $odone (i32.ge_u (local.get $o) (i32.shl (local.get $C4) (i32.const 2))))
            (local.set $best (f32x4.splat (f32.const -inf)))
            (local.set $at (i32x4.splat (i32.const -1)))
            (local.set $r (local.get $r0))
            (block $rdone (loop $rl
              (br_if $rdone (i32.ge_s (local.get $r) (local.get $r1)))
              (local.set $c (local.get $c0))
              (block $cdone (loop $cl
                (br_if $cdone (i32.ge_s (local.get $c) (local.get $c1)))
                ;; byte offset of (b, r, c, o) in x
                (local.set $pix (i32.add (i32.mul (i32.add (i32.mul (i32.add (i32.mul (local.get $b) (local.get $H)) (local.get $r)) (local.get $W)) (local.get $c))
                  (local.get $rowBytes)) (local.get $o)))
                (local.set $v (v128.load (i32.add (local.get $x) (local.get $pix))))
                (local.set $gt (f32x4.gt (local.get $v) (local.get $best)))
                (local.set $best (v128.bitselect (local.get $v) (local.get $best) (local.get $gt)))
                (local.set $at (v128.bitselect
                  (i32x4.add (i32x4.splat (local.get $pix)) (v128.const i32x4 0 4 8 12)) (local.get $at) (local.get $gt)))
                (local.set $c (i32.add (local.get $c) (i32.const 1)))
                (br $cl)))
              (local.set $r (i32.add (local.get $r) (i32.const 1)))
              (br $rl)))
            (local.set $d (v128.load (i32.add (local.get $g) (local.get $o))))
            (local.set $off (i32x4.extract_lane 0 (local.get $at)))
            (if (i32.ge_s (local.get $off) (i32.const 0)) (then (f32.store (i32.add (local.get $dx) (local.get $off))
              (f32.add (f32.load (i32.add (local.get $dx) (local.get $off))) (f32x4.extract_lane 0 (local.get $d))))))
            (local.set $off (i32x4.extract_lane 1 (local.get $at)))
            (if (i32.ge_s (local.get $off) (i32.const 0)) (then (f32.store (i32.add (local.get $dx) (local.get $off))
              (f32.add (f32.load (i32.add (local.get $dx) (local.get $off))) (f32x4.extract_lane 1 (local.get $d))))))
            (local.set $off (i32x4.extract_lane 2 (local.get $at)))
            (if (i32.ge_s (local.get $off) (i32.const 0)) (then (f32.store (i32.add (local.get $dx) (local.get $off))
              (f32.add (f32.load (i32.add (local.get $dx) (local.get $off))) (f32x4.extract_lane 2 (local.get $d))))))
            (local.set $off (i32x4.extract_lane 3 (local.get $at)))
            (if (i32.ge_s (local.get $off) (i32.const 0)) (then (f32.store (i32.add (local.get $dx) (local.get $off))
              (f32.add (f32.load (i32.add (local.get $dx) (local.get $off))) (f32x4.extract_lane 3 (local.get $d))))))
            (local.set $o (i32.add (local.get $o) (i32.const 16)))
            (br $ol)))
          (local.set $g (i32.add (local.get $g) (local.get $rowBytes)))
          (local.set $ow (i32.add (local.get $ow) (i32.const 1)))
          (br $wl)))
        (local.set $oh (i32.add (local.get $oh) (i32.const 1)))
        (br $hl)))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $bl))))
)
