# Static types for compiling sim/serving/step_replica.py with Cython (an "augmenting"
# .pxd: the .py stays the one source of the model and runs as it is without a compiler).
# The compiled module is built by hatch_build.py as sim.serving._step_replica_c and used
# only where it was built from these exact two files (sim/serving/step_core.py).
# Integers are i64 (C long long: step clocks, token and block counts), times C doubles:
# the same IEEE arithmetic as Python floats, so both give identical numbers (tested).
cimport cython

ctypedef long long i64

cdef class Seq:
    cdef public object handle
    cdef public i64 P, O, grp, hit, g, comp, own, k0, c0, g0, key, finish_k, gen
    cdef public i64 preemptions, order
    cdef public double ready, first_s, end_s
    cdef public bint reg, decoding


cdef class StepReplica:
    cdef public object model, st, waiting
    cdef public i64 bs, budget, max_seqs, n_blocks, wm, max_len
    cdef public list _lin, pb, holders, hist, finish, pending, done, firsts, _aborting
    cdef public list _victims, _admits
    cdef public double _per_step, _per_seq, _a_dec, _a_pre, pre_s, pre_tok_s, post_s
    cdef public bint caching, track_first, planned, _silent, _two
    cdef public i64 _order, steps, segments, wakes, preemptions
    cdef public double busy_s, t, cut, seg_first, seg_growth, wake_t, _t2, _g2
    cdef public i64 k, D, ksum, free, promised, seg_n, _free1, _chunk, _dec_s, _m
    cdef public i64 _chunk2, _dec2, _free2, lag
    cdef public dict batch
    cdef public Seq prefill
    cdef dict __dict__

    cdef _reset(self, double t)
    @cython.locals(first=double, growth=double, t0=double, x=double, j=i64, n0=i64, i=i64,
                   lag=i64)
    cdef _run_to(self, double ready, double t)
    @cython.locals(t0=double, t1=double, j=i64)
    cdef _cut(self, double ready, i64 later)
    @cython.locals(t=double, c=double, D=i64, k=i64, bs=i64, free=i64, a_dec=double,
                   first=double, growth=double, n=i64)
    cdef _plan(self)
    @cython.locals(D=i64, total=i64, k=i64, bs=i64, free=i64, need=i64, first=double,
                   t=double, loud=bint, cached=i64, n=i64)
    cdef bint _plan_admit1(self, Seq r)
    @cython.locals(m=i64)
    cdef _arm_two_part(self, double t, double first)
    @cython.locals(r=Seq, i=i64)
    cdef _pop_ready(self, double t)
    @cython.locals(t=double, k=i64, bs=i64, budget=i64, D=i64, pf=Seq, dec_need=i64,
                   chunk=i64, pf_need=i64, pf_pairs=i64, free=i64, dec_s=i64,
                   ksum_s=i64, seqs=i64, new_n=i64, new_comp=i64, new_blk=i64,
                   new_fin=i64, loud=bint, mixed=bint, pf2=Seq, c2=i64, c=i64,
                   n_run=i64, max_seqs=i64, wm=i64, r=Seq, g=i64, hit=bint,
                   cached=i64, total=i64, n=i64, need=i64, f=i64, n_tok=i64,
                   first=double, growth=double, left=i64)
    cdef _plan_step(self)
    @cython.locals(bs=i64, k=i64, n_run=i64, free=i64, budget=i64, dec_s=i64,
                   ksum_s=i64, chunk=i64, pairs=i64, i=i64, r=Seq, v=Seq, comp=i64,
                   n=i64, need=i64, out=bint, held=i64, g=i64)
    cdef tuple _plan_preemption(self)
    @cython.locals(bs=i64, k1=i64, D2=i64, ksum2=i64, fmin=i64, budget=i64,
                   chunk2=i64, left2=i64, pf_need=i64, pairs=i64, need=i64,
                   first=double, growth=double, n=i64, m_max=i64, bound=i64, pf=Seq,
                   r=Seq, cached=i64, tokens=i64)
    cdef bint _plan_after(self, double t1, i64 D, i64 new_n, i64 new_comp, i64 new_fin,
                          i64 new_blk, Seq pf2, i64 c2, list admits, i64 free)
    @cython.locals(bs=i64, bound=i64, base_pf=i64, i=i64, lo=i64, hi=i64, mid=i64)
    cdef i64 _kv_steps(self, i64 m_max, i64 free, i64 chunk, list hist, i64 k, i64 D,
                        i64 comp1)
    @cython.locals(m=i64)
    cdef _execute(self)
    @cython.locals(bs=i64, k=i64, t=double, pf=Seq, chunk=i64, c=i64, r=Seq,
                   cached=i64, tokens=i64, need=i64)
    cdef _apply_head(self, double first)
    @cython.locals(g=i64, comp=i64, key=i64, f=i64)
    cdef _start_decoding(self, Seq r, i64 k, double t)
    @cython.locals(bs=i64, k=i64, D=i64, free=i64, q=i64, rem=i64, lo=i64, hi=i64)
    cdef _apply_run(self, i64 n, double first, double growth)
    @cython.locals(k=i64, dt=double, t=double, m=i64)
    cdef tuple _advance(self, i64 n, double first, double growth, i64 decoders)
    @cython.locals(bs=i64, gen=i64, s=Seq, comp=i64)
    cdef _finish_decoders(self, i64 k, double t)
    @cython.locals(bs=i64, k=i64, t=double, r=Seq, cached=i64, tokens=i64, need=i64,
                   free=i64, pf=Seq, chunk=i64, q=i64, rem=i64, blocks=i64, i=i64,
                   c1=i64, new=i64, g=i64, v=Seq)
    cdef _apply(self, i64 n, double first, double growth)
    cdef _finished(self, Seq s, double t)
    cdef i64 _unregister(self, Seq s)
    @cython.locals(bs=i64)
    cdef _preempt(self, Seq v)
    @cython.locals(bs=i64, k=i64, comp=i64, held=i64)
    cdef _drop(self, Seq v)


@cython.locals(n=i64, b=double)
cdef i64 _steps_until(double x, double first, double growth)
@cython.locals(j=i64)
cdef i64 _join_steps(double x, double first, double growth, i64 lag)
@cython.locals(c=i64)
cpdef i64 cached_prompt_tokens(double hit_share, i64 prompt, i64 block_size)
@cython.locals(q=i64, r=i64, blocks=i64)
cdef i64 _kv_need(i64 m, i64 bs, i64 D, list cum, bint has_pf, i64 comp1, i64 chunk,
                   i64 base_pf)
