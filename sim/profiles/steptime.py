"""The step-level replica profile: vLLM scheduler limits, step time and per-request overheads.

What it models
--------------
A vLLM-style replica runs *engine steps*. One step processes a batch of tokens: one token for
every decoding sequence plus prefill chunks, at most ``max_num_batched_tokens`` in all. This
module holds the profile blocks that describe such a replica (the format agreed in
``steptime-spec.md``, shared with the work that derives the numbers from kernel
measurements) and the arithmetic on them:

* :class:`Scheduler` -- the scheduler limits (names as in vLLM: token budget, KV block size,
  watermark, ``max_model_len``, prefix caching) and whether the engine schedules
  asynchronously (``async_scheduling``, vLLM ``--async-scheduling``: one step of admission
  delay, see :mod:`sim.serving.step_replica`);
* :class:`StepTime` -- the duration of one step from its composition::

      T = per_step_s + linear(N) + per_seq_s * S
          + decode_attention_s_per_token * K + prefill_attention_s_per_token2 * A

  N = tokens scheduled in the step (prefill + decode), S = sequences scheduled, K = context
  (KV) tokens read by the decoding sequences (each counts the tokens in its KV after the
  step, its new token included), A = query x key pairs of the prefill chunks (a chunk of c
  new tokens after o computed ones has c*o + c*(c+1)/2). ``linear`` is piecewise linear in
  N between the ``tokens`` knots, constant below the first knot and extended with the last
  segment's slope beyond the last knot.
* :class:`Overheads` -- per-request time outside the steps (API server and tokenization
  before, detokenization and HTTP after).
* :class:`StepUncertainty` -- how sure the profile is of these terms (optional block
  ``step_time.uncertainty``; absent = certain, as every profile before it)::

      uncertainty:
        rel_std: 0.15           # one factor on the whole step (every step-time term)
        terms:                  # each term's own factor (1 sd, relative to its value)
          linear_s: 0.04        # (the whole token table: one factor)
          per_step_s: 0.09
          pre_s: 0.2            # overheads.pre_s / post_s may be named too
        correlation: [[1, -0.7, 0], [-0.7, 1, 0], [0, 0, 1]]   # of the terms' factors,
                                                                # in the order of `terms`
        source: "where the numbers come from"

  Each factor is lognormal with mean 1 and the given standard deviation; the terms' factors
  share a Gaussian copula with ``correlation`` (absent: independent). A Monte Carlo
  replication draws them once (:meth:`StepUncertainty.factors`, from ``1 +
  len(UNCERTAIN_TERMS)`` uniforms in a fixed order) and serves with
  :func:`scaled_model`: every step-time term times the common factor and its own factor,
  ``pre_s`` and ``post_s`` times their own. ``capsim profile fit`` writes ``terms`` and
  ``correlation`` from the fit; a derived profile states ``rel_std`` from the derivation's
  held-out errors (docs/fidelity.md).
* :func:`run_time_s` / :func:`steps_ending_by` -- closed forms for a run of steps whose
  composition is fixed except that K and A grow by the same amount every step (decoding
  contexts grow by one token per step, a prefill's offset by its chunk): the step times
  form an arithmetic sequence, so n steps take ``n*T1 + d*n*(n-1)/2`` and the number of
  steps that end by a given time is the root of a quadratic.

Assumptions: the step time is separable into these terms (token-proportional GEMMs,
per-sequence costs, attention linear in context for decode and in pairs for prefill); it
does not depend on which sequences make up the batch beyond these counts.

The step arithmetic depends only on the standard library and pydantic; the uncertainty's
draws use :mod:`sim.core.uncertain` (numpy, scipy).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sim.core.uncertain import (
    correlated_scores,
    correlation_problem,
    lognormal_factor,
    normal_scores,
)

__all__ = ["Scheduler", "StepTime", "Overheads", "StepModel", "run_time_s", "steps_ending_by",
           "prefill_pairs", "from_curve", "StepUncertainty", "UNCERTAIN_TERMS", "STEP_TERMS",
           "scaled_model", "DERIVED_REL_STD", "DERIVED_MOE_REL_STD", "derived_uncertainty"]

NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class _Block(BaseModel):
    """Strict pydantic base: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Scheduler(_Block):
    """vLLM scheduler limits (V1 engine; defaults as in the steptime spec)."""

    max_num_batched_tokens: int = Field(8192, ge=1)
    block_size: int = Field(16, ge=1)
    watermark: float = Field(0.01, ge=0.0, lt=1.0)
    max_model_len: int = Field(131072, ge=1)
    prefix_caching: bool = True
    engine: str = "vllm-0.10 (V1)"
    # vLLM --async-scheduling: the engine core schedules step n+1 while the GPU runs step
    # n, so a request that becomes schedulable during step n first runs in step n+2 (at
    # once on an idle engine). Only the admission delay is modelled here (see
    # sim.serving.step_replica); the CPU cost it hides is in per_step_s (derive.py).
    async_scheduling: bool = False


STEP_TERMS = ("per_step_s", "linear_s", "per_seq_s", "decode_attention_s_per_token",
              "prefill_attention_s_per_token2")
"""The step-time terms a common factor scales (``linear_s``: the whole token table)."""
UNCERTAIN_TERMS = (*STEP_TERMS, "pre_s", "post_s")
"""Every term that may carry its own uncertainty, in the order its uniform is drawn."""
RelStd = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class StepUncertainty(_Block):
    """Relative spreads (1 sd) of the step-time terms (see the module docstring)."""

    rel_std: RelStd = 0.0
    terms: dict[str, RelStd] = Field(default_factory=dict)
    correlation: list[list[float]] | None = None
    source: str = ""

    @model_validator(mode="after")
    def _check(self) -> StepUncertainty:
        for name in self.terms:
            if name not in UNCERTAIN_TERMS:
                raise ValueError(f"terms: unknown term '{name}' (known: "
                                 f"{', '.join(UNCERTAIN_TERMS)})")
        if self.correlation is not None:
            problem = correlation_problem(self.correlation, len(self.terms))
            if problem:
                raise ValueError(f"correlation {problem}")
        return self

    @property
    def certain(self) -> bool:
        """No spread at all: serving it needs no draw."""
        return self.rel_std == 0.0 and not any(self.terms.values())

    def factors(self, uniforms: Sequence[float]) -> dict[str, float]:
        """Each term's factor (``UNCERTAIN_TERMS``) from ``1 + len(UNCERTAIN_TERMS)``
        uniforms: the first for the common factor, then one per term in that order
        (drawn whether or not the term is uncertain, so that one term becoming uncertain
        leaves the others' draws alone)."""
        if len(uniforms) != 1 + len(UNCERTAIN_TERMS):
            raise ValueError(f"expected {1 + len(UNCERTAIN_TERMS)} uniforms, "
                             f"got {len(uniforms)}")
        z = normal_scores(uniforms)
        common = lognormal_factor(self.rel_std, float(z[0]))
        named = list(self.terms)
        scores = dict(zip(UNCERTAIN_TERMS, z[1:], strict=True))
        mixed = correlated_scores([scores[n] for n in named], self.correlation)
        scores.update(zip(named, (float(x) for x in mixed), strict=True))
        out = {}
        for name in UNCERTAIN_TERMS:
            own = lognormal_factor(self.terms.get(name, 0.0), scores[name])
            out[name] = own * common if name in STEP_TERMS else own
        return out


DERIVED_REL_STD = 0.14
"""The stated spread (1 sd, relative, one factor on the whole step) of a derived dense
profile: the root mean square of the end-to-end latency errors of derived profiles on the
108 dense held-out load points of docs/fidelity.md ("Per load point": InferenceX
Llama-3.1-70B FP8 on H100/H200 TP1-8 and LLMServingSim's vLLM runs), 13.7%, rounded up.
Those errors are mostly one-sided (derived steps about 12% too fast on average); a factor
of mean 1 does not correct that bias, its spread covers it at about one standard
deviation. TTFT errors are larger (prefill, median 17%) and are not carried separately."""
DERIVED_MOE_REL_STD = 0.13
"""The same for a derived mixture-of-experts profile: 12.6% root mean square end-to-end
error on the 43 gpt-oss-120b load points of docs/fidelity.md (the only MoE model there),
rounded up."""


def derived_uncertainty(moe: bool) -> dict[str, object]:
    """The ``step_time.uncertainty`` block of a derived profile (plain data)."""
    rel = DERIVED_MOE_REL_STD if moe else DERIVED_REL_STD
    kind = "mixture-of-experts" if moe else "dense"
    return {"rel_std": rel,
            "source": (f"stated spread of a derived {kind} profile: the root mean square "
                       "end-to-end error of derived profiles on held-out load points, "
                       "docs/fidelity.md (sim.profiles.steptime."
                       f"{'DERIVED_MOE_REL_STD' if moe else 'DERIVED_REL_STD'})")}


class StepTime(_Block):
    """Duration of one engine step from its composition (see the module docstring)."""

    per_step_s: NonNegative = 0.0
    tokens: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [1], min_length=1)
    linear_s: list[NonNegative] = Field(default_factory=lambda: [0.0], min_length=1)
    per_seq_s: NonNegative = 0.0
    decode_attention_s_per_token: NonNegative = 0.0
    prefill_attention_s_per_token2: NonNegative = 0.0
    source: str = ""
    uncertainty: StepUncertainty | None = None

    @model_validator(mode="after")
    def _check_knots(self) -> StepTime:
        t, v = self.tokens, self.linear_s
        if len(t) != len(v):
            raise ValueError(f"tokens has {len(t)} knots but linear_s has {len(v)}; they must "
                             "have the same length")
        for i in range(1, len(t)):
            if t[i] <= t[i - 1]:
                raise ValueError(f"tokens[{i}] = {t[i]} is not above tokens[{i - 1}] = "
                                 f"{t[i - 1]}; knots must be strictly increasing")
            if v[i] < v[i - 1]:
                raise ValueError(f"linear_s[{i}] = {v[i]:g} is below linear_s[{i - 1}] = "
                                 f"{v[i - 1]:g}; more tokens must not take less time")
        return self

    def linear(self, n_tokens: float) -> float:
        """Time of the token-proportional operators for ``n_tokens`` tokens in a step."""
        t, v = self.tokens, self.linear_s
        if n_tokens <= t[0] or len(t) == 1:
            return v[0]
        i = bisect_right(t, n_tokens) - 1
        if i >= len(t) - 1:  # beyond the last knot: the last segment's slope
            i = len(t) - 2
        return v[i] + (v[i + 1] - v[i]) * (n_tokens - t[i]) / (t[i + 1] - t[i])

    def step_s(self, n_tokens: float, n_seqs: float, kv_tokens: float,
               prefill_pairs_: float) -> float:
        """Duration of one step (N tokens, S sequences, K decode context, A prefill pairs)."""
        return (self.per_step_s + self.linear(n_tokens) + self.per_seq_s * n_seqs
                + self.decode_attention_s_per_token * kv_tokens
                + self.prefill_attention_s_per_token2 * prefill_pairs_)

    def growth_s(self, d_kv_tokens: float, d_prefill_pairs: float) -> float:
        """How much each step of a run is longer than the one before, when K grows by
        ``d_kv_tokens`` and A by ``d_prefill_pairs`` per step (N and S fixed)."""
        return (self.decode_attention_s_per_token * d_kv_tokens
                + self.prefill_attention_s_per_token2 * d_prefill_pairs)


class Overheads(_Block):
    """Per-request time outside the engine steps."""

    pre_s: NonNegative = 0.0
    pre_s_per_input_token: NonNegative = 0.0
    post_s: NonNegative = 0.0


class StepModel(_Block):
    """Everything a step-level replica needs: limits, KV size, step time and overheads.

    ``max_num_seqs`` is the profile's ``max_batch``; ``kv_capacity_tokens`` its KV size
    (rounded down to whole blocks).
    """

    max_num_seqs: int = Field(256, ge=1)
    kv_capacity_tokens: int = Field(ge=1)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    step_time: StepTime = Field(default_factory=StepTime)
    overheads: Overheads = Field(default_factory=Overheads)

    @model_validator(mode="after")
    def _check_sizes(self) -> StepModel:
        if self.scheduler.max_num_batched_tokens < self.max_num_seqs:
            # vLLM refuses this too: a step must have room for one token per sequence.
            raise ValueError(f"scheduler.max_num_batched_tokens "
                             f"({self.scheduler.max_num_batched_tokens}) is below "
                             f"max_num_seqs ({self.max_num_seqs})")
        st = self.step_time
        if st.per_step_s + st.linear_s[0] <= 0.0:
            # A step of zero duration would let a replica run unboundedly many in no time.
            raise ValueError("a step must take time: step_time.per_step_s + linear_s[0] > 0")
        if self.kv_capacity_tokens < self.scheduler.block_size:
            raise ValueError(f"kv_capacity_tokens ({self.kv_capacity_tokens}) holds no "
                             f"block of {self.scheduler.block_size} tokens")
        return self

    @property
    def num_blocks(self) -> int:
        """KV blocks of the replica."""
        return self.kv_capacity_tokens // self.scheduler.block_size

    @property
    def max_len_tokens(self) -> int:
        """The longest request (input + output tokens) the replica serves: max_model_len,
        and no more than its whole KV cache (vLLM refuses to start otherwise; here a longer
        request is refused as too large)."""
        return min(self.scheduler.max_model_len, self.num_blocks * self.scheduler.block_size)


def prefill_pairs(chunk: int, offset: int) -> int:
    """Query x key pairs of a prefill chunk of ``chunk`` tokens after ``offset`` computed
    ones (causal attention: token i of the chunk reads offset + i keys)."""
    return chunk * offset + chunk * (chunk + 1) // 2


def run_time_s(n: float, first_s: float, growth_s: float) -> float:
    """Time of ``n`` steps whose durations are first_s, first_s + growth_s, ..."""
    return n * first_s + growth_s * n * (n - 1) / 2.0


def steps_ending_by(x: float, first_s: float, growth_s: float) -> int:
    """How many steps of the run (first_s, first_s + growth_s, ...) end by time ``x``
    after its start: the largest n >= 0 with run_time_s(n) <= x. Solved as a quadratic,
    then corrected by one step either way against the sum itself (round-off near a
    boundary must not put a step on the wrong side)."""
    if x < first_s:
        return 0
    if first_s <= 0.0:
        raise ValueError("steps must take time (first_s > 0)")
    if growth_s <= 0.0:
        n = int(x / first_s)
    else:
        # g/2 n^2 + (T1 - g/2) n - x = 0
        b = first_s - growth_s / 2.0
        n = int((-b + math.sqrt(b * b + 2.0 * growth_s * x)) / growth_s)
    while n > 0 and run_time_s(n, first_s, growth_s) > x:
        n -= 1
    while run_time_s(n + 1, first_s, growth_s) <= x:
        n += 1
    return n


def from_curve(decode_step_s: list[float], prefill_tokens_per_s: float, *, max_num_seqs: int,
               kv_capacity_tokens: int, scheduler: Scheduler | None = None,
               overheads: Overheads | None = None, source: str = "") -> StepModel:
    """The step model of a legacy curve profile (converted once, when it is loaded).

    ``decode_step_s[b - 1]`` is the time of a decode step with ``b`` sequences, i.e.
    ``b / curve(b)`` for b = 1..max_num_seqs. The conversion keeps every decode step time
    exact and makes prefill tokens cost ``1 / prefill_tokens_per_s`` each:

    * ``per_seq_s`` = the secant slope of the decode step time over b, less one prefill
      token's time (>= 0): what a sequence costs beyond its one token;
    * ``linear(N)`` at knots N = 1..max_num_seqs is the decode step time less ``per_seq_s *
      N`` (made non-decreasing), and grows by ``1 / prefill_tokens_per_s`` per token beyond;
    * no attention terms (the legacy curve ignored context length), no overheads.

    So a decode step of b sequences takes ``b / curve(b)`` as before; a prefill chunk of c
    tokens beside b decoders adds about ``c / prefill_tokens_per_s`` (exactly, when the
    decode step time is linear in b as for ``curve(b) = b r1 / (1 + alpha (b - 1))``); and
    unlike the legacy model, prefill is chunked into steps beside decoding instead of
    stalling it, and KV is allocated as tokens are computed instead of reserved up front.
    """
    n = len(decode_step_s)
    if n != max_num_seqs:
        raise ValueError(f"decode_step_s has {n} entries, expected max_num_seqs = "
                         f"{max_num_seqs}")
    per_prefill = 1.0 / prefill_tokens_per_s
    slope = (decode_step_s[-1] - decode_step_s[0]) / (n - 1) if n > 1 else 0.0
    per_seq = max(0.0, slope - per_prefill)
    linear: list[float] = []
    for b, t in enumerate(decode_step_s, start=1):
        v = t - per_seq * b
        linear.append(v if not linear or v > linear[-1] else linear[-1])
    tokens = list(range(1, n + 1))
    extra = 1 << 16  # a far knot: beyond the batch, each token is a prefill token
    tokens.append(n + extra)
    linear.append(linear[-1] + extra * per_prefill)
    sched = scheduler if scheduler is not None else Scheduler(
        max_num_batched_tokens=max(8192, max_num_seqs))
    return StepModel(max_num_seqs=max_num_seqs, kv_capacity_tokens=kv_capacity_tokens,
                     scheduler=sched, overheads=overheads or Overheads(),
                     step_time=StepTime(tokens=tokens, linear_s=linear, per_seq_s=per_seq,
                                        source=source or "converted from a decode curve"))


def scaled_model(model: StepModel, factors: Mapping[str, float]) -> StepModel:
    """``model`` with each term of :data:`UNCERTAIN_TERMS` times its factor (missing: 1),
    the uncertainty block dropped (this is one draw of it)."""
    st, ov = model.step_time, model.overheads
    f = {name: float(factors.get(name, 1.0)) for name in UNCERTAIN_TERMS}
    step = st.model_copy(update={
        "per_step_s": st.per_step_s * f["per_step_s"],
        "linear_s": [x * f["linear_s"] for x in st.linear_s],
        "per_seq_s": st.per_seq_s * f["per_seq_s"],
        "decode_attention_s_per_token": (st.decode_attention_s_per_token
                                         * f["decode_attention_s_per_token"]),
        "prefill_attention_s_per_token2": (st.prefill_attention_s_per_token2
                                           * f["prefill_attention_s_per_token2"]),
        "uncertainty": None})
    over = ov.model_copy(update={"pre_s": ov.pre_s * f["pre_s"],
                                 "post_s": ov.post_s * f["post_s"]})
    return model.model_copy(update={"step_time": step, "overheads": over})
