"""From per-request outcomes to the metrics of one replication.

Blocks of finished requests (:class:`~sim.serving.engine.FinishedBlock`) are folded into
bounded-size accumulators as they complete, vectorised with numpy:

* counts and token totals per destination, per traffic class and per API model; the
  cached input tokens of an API are its ``cached_input_share`` of its input, except for
  streams that declare a prefix (:class:`~sim.workload.streams.PrefixConfig`), billed by
  their declaration (``api.<name>.prefix_input_tokens`` / ``prefix_cached_input_tokens``,
  and over all their requests ``prefix.input_tokens_total`` / ``prefix.cached_input_tokens_total``
  for the API-only alternative);
* log-bucketed histograms (:mod:`sim.core.histogram`, 1% relative error) of queue wait, TTFT,
  end-to-end latency and time per output token, per class and per destination;
* SLO attainment per request against its stream's SLO (a failed request misses it);
* a time series in bins of ``bin_s``: arrivals, overflow and failures by arrival time,
  mean queue length and mean running requests (exact integrals of the waiting and
  running intervals), and utilization.

Utilization is the share of the fleet's capacity used: a prefill token costs
``1 / prefill_tokens_per_s`` seconds of a replica and a decode token
``1 / saturated_decode_tokens_per_s`` (the curve at the batch cap), so 100% means every
replica prefilling or decoding at its best rate all the time. In the time series, a
request's prefill occupies exactly ``[first_token - input/prefill_rate, first_token]``
and its output tokens are spread evenly over its decode interval. ``gpu_busy_fraction``
is the share of replica-time a replica spends executing engine steps (step replicas; on
the fluid replica, with at least one request admitted). These run-level shares
are of the simulated span, the horizon or, if later, when its last request ended (work
admitted before the horizon ends after it), so they never exceed 1.

For a fleet that changes (:mod:`sim.serving.fleet`), :meth:`MetricsAccumulator.set_capacity`
replaces the fixed ``replicas x time`` by the replica-time actually up (serving), per run
and per bin, so utilization is of the replicas that were up; ``paid_utilization`` is the
same work over the replica-time billed. Requests evicted by a failure or preemption and
restarted are counted (``requests_restarted``, ``restarts_total``). KV preemptions inside
a step replica (vLLM's recompute, :mod:`sim.serving.step_replica`) are counted per request
(``kv_preemptions`` in requests.parquet) and per run (``requests_kv_preempted``,
``kv_preemptions_total``).

Latency definitions: ``wait`` = admission (or accepted API attempt) - arrival;
``ttft`` = first token - arrival; ``e2e`` = completion - arrival;
``tpot`` = (completion - first token) / (output tokens - 1), for outputs over one token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from sim.core.histogram import LogHistogram
from sim.serving.engine import FAIL_REASONS, OUTCOME_API, OUTCOME_FAILED, OUTCOME_GPU, FinishedBlock
from sim.workload.streams import PrefixConfig

__all__ = ["MetricsAccumulator", "StreamSlo", "interval_integral", "LATENCIES", "DESTS"]

LATENCIES = ("wait", "ttft", "e2e", "tpot")
DESTS = ("all", "gpu", "api")


@dataclass(frozen=True)
class StreamSlo:
    """A stream's latency objectives in seconds (inf = none)."""

    ttft_s: float = float("inf")
    e2e_s: float = float("inf")
    tpot_s: float = float("inf")
    deadline_s: float = float("inf")


def interval_integral(edges: np.ndarray, start: np.ndarray, end: np.ndarray,
                      weight: np.ndarray | None = None) -> np.ndarray:
    """Per bin, sum of ``weight_i * |[start_i, end_i] ∩ bin|`` (exact; ``end >= start``;
    no ``weight``: all ones).

    Equal-width bins (the time series) take O(n + bins) bincounts: every interval first
    counts whole in its first bin; the few that reach past it (requests last seconds, bins
    minutes) are then taken out again and split: their part of the first bin, of the last
    bin and, through a difference array, every bin in between. (Selecting the one-bin
    intervals instead cost four gathers of almost every element.) Other edges fall back
    to sorted cumulative sums, O(n log n).
    """
    nb = edges.size - 1
    if start.size == 0:
        return np.zeros(nb)
    lo, hi = float(edges[0]), float(edges[-1])
    width = (hi - lo) / nb
    if not np.allclose(np.diff(edges), width, rtol=1e-12, atol=0.0):
        w = np.ones(start.size) if weight is None else weight
        return _interval_integral_sorted(edges, start, end, w)
    s = np.clip(start, lo, hi)
    e = np.clip(end, lo, hi)
    bs = ((s - lo) / width).astype(np.int64)
    np.minimum(bs, nb - 1, out=bs)
    be = ((e - lo) / width).astype(np.int64)
    np.minimum(be, nb - 1, out=be)
    w = None if weight is None else np.broadcast_to(np.asarray(weight, np.float64), s.shape)
    whole = e - s
    if w is not None:
        whole *= w
    out = np.bincount(bs, whole, minlength=nb)
    k = np.flatnonzero(be != bs)  # intervals over more than one bin
    if k.size:
        bs, be, s, e = bs[k], be[k], s[k], e[k]
        wk = np.ones(k.size) if w is None else w[k]
        out -= np.bincount(bs, wk * (e - s), minlength=nb)
        out += np.bincount(bs, wk * (edges[bs + 1] - s), minlength=nb)
        out += np.bincount(be, wk * (e - edges[be]), minlength=nb)
        inner = np.bincount(bs + 1, wk, minlength=nb + 1) - np.bincount(be, wk, minlength=nb + 1)
        out += np.cumsum(inner)[:nb] * width
    return out


def _interval_integral_sorted(edges: np.ndarray, start: np.ndarray, end: np.ndarray,
                              weight: np.ndarray) -> np.ndarray:
    def cumulative(x: np.ndarray, at: np.ndarray, w: np.ndarray) -> np.ndarray:
        order = np.argsort(at, kind="stable")
        a, ww = at[order], w[order]
        cw = np.concatenate(([0.0], np.cumsum(ww)))
        cwa = np.concatenate(([0.0], np.cumsum(ww * a)))
        k = np.searchsorted(a, x, side="left")
        return cw[k] * x - cwa[k]

    f = cumulative(edges, start, weight) - cumulative(edges, end, weight)
    return np.diff(f)


class MetricsAccumulator:
    """Folds finished blocks into the metrics of one replication."""

    def __init__(self, *, class_names: Sequence[str], stream_class: Sequence[int],
                 stream_slos: Sequence[StreamSlo], api_names: Sequence[str],
                 api_cached_share: Sequence[float], horizon_s: float, bin_s: float,
                 replicas: int, saturated_tokens_per_s: float,
                 prefill_tokens_per_s: float = float("inf"), keep_requests: bool = False,
                 stream_prefix: Sequence[PrefixConfig | None] = ()):
        self.class_names = list(class_names)
        self.stream_class = np.asarray(stream_class, np.int16)
        self.slo = {f: np.array([getattr(s, f) for s in stream_slos] or [np.inf])
                    for f in ("ttft_s", "e2e_s", "tpot_s", "deadline_s")}
        self.api_names = list(api_names)
        self.api_cached_share = np.asarray(api_cached_share, np.float64)
        # Streams that declare a prefix bill their API input by it, not by the API's share:
        # their input and cached input tokens, per API and over every request.
        self.stream_prefix = list(stream_prefix)
        self.has_prefix = any(p is not None for p in self.stream_prefix)
        self.api_prefix_tokens = np.zeros((len(self.api_names), 2))  # input, cached
        self.prefix_tokens = np.zeros(2)
        self.horizon_s = horizon_s
        self.bin_s = bin_s
        self.replicas = replicas
        self.capacity_tokens_per_s = replicas * saturated_tokens_per_s
        self.decode_s_per_token = 1.0 / saturated_tokens_per_s if saturated_tokens_per_s else 0.0
        self.prefill_s_per_token = 1.0 / prefill_tokens_per_s
        nbins = max(1, int(np.ceil(horizon_s / bin_s)))
        self.edges = np.arange(nbins + 1, dtype=np.float64) * bin_s
        self.series = {k: np.zeros(nbins) for k in
                       ("arrivals", "to_api", "failed", "queue_area", "running_area",
                        "work_s")}
        ncls = len(self.class_names)
        self.hist = {(c, d, m): LogHistogram() for c in range(ncls) for d in DESTS
                     for m in LATENCIES}
        self.counts = {k: np.zeros(ncls, np.int64) for k in
                       ("arrived", "gpu", "api", "failed", "slo_met")}
        self.tokens = {k: 0.0 for k in ("input", "output", "gpu_input", "gpu_output")}
        self.api_tokens = np.zeros((len(self.api_names), 3))  # requests, input, output
        self.fail_reasons = np.zeros(len(FAIL_REASONS), np.int64)
        self.keep_requests = keep_requests
        self.request_tables: list[pa.Table] = []
        self.restarted = 0  # requests evicted at least once
        self.restarts = 0
        self.kv_preempted = 0  # requests preempted (recomputed) at least once on a replica
        self.kv_preemptions = 0
        self.capacity: tuple[float, np.ndarray, float] | None = None

    # ----------------------------------------------------------------- folding
    def add(self, fb: FinishedBlock) -> None:
        r = fb.requests
        cls = self.stream_class[r.stream_id] if r.stream_id.size else r.class_id
        gpu = fb.outcome == OUTCOME_GPU
        api = fb.outcome == OUTCOME_API
        failed = fb.outcome == OUTCOME_FAILED
        lat = self._latencies(fb)
        self._count(cls, gpu, api, failed, fb, lat)
        self._histograms(cls, gpu, api, lat)
        self._series(fb, gpu, api, failed)
        if fb.restarts.size:
            self.restarted += int(np.count_nonzero(fb.restarts))
            self.restarts += int(fb.restarts.sum())
        if fb.preemptions is not None and fb.preemptions.size:
            self.kv_preempted += int(np.count_nonzero(fb.preemptions))
            self.kv_preemptions += int(fb.preemptions.sum())
        if self.keep_requests:
            self.request_tables.append(self._request_table(fb, lat))

    def _latencies(self, fb: FinishedBlock) -> dict[str, np.ndarray]:
        arr = fb.requests.arrival_s
        out = fb.requests.output_tokens
        with np.errstate(invalid="ignore", divide="ignore"):
            tpot = np.where(out > 1, (fb.end_s - fb.first_token_s) / (out - 1), np.nan)
        return {"wait": fb.start_s - arr, "ttft": fb.first_token_s - arr,
                "e2e": fb.end_s - arr, "tpot": tpot}

    def _count(self, cls, gpu, api, failed, fb: FinishedBlock, lat) -> None:
        ncls = len(self.class_names)
        c = self.counts
        c["arrived"] += np.bincount(cls, minlength=ncls)
        c["gpu"] += np.bincount(cls[gpu], minlength=ncls)
        c["api"] += np.bincount(cls[api], minlength=ncls)
        c["failed"] += np.bincount(cls[failed], minlength=ncls)
        sid = fb.requests.stream_id
        with np.errstate(invalid="ignore"):
            met = ~failed
            met &= ~(lat["ttft"] > self.slo["ttft_s"][sid])
            met &= ~(lat["e2e"] > self.slo["e2e_s"][sid])
            met &= ~(lat["e2e"] > self.slo["deadline_s"][sid])
            met &= ~(lat["tpot"] > self.slo["tpot_s"][sid])
        c["slo_met"] += np.bincount(cls[met], minlength=ncls)
        r = fb.requests
        t = self.tokens
        t["input"] += float(r.input_tokens.sum())
        t["output"] += float(r.output_tokens.sum())
        t["gpu_input"] += float(r.input_tokens[gpu].sum())
        t["gpu_output"] += float(r.output_tokens[gpu].sum())
        if self.api_names:
            k = len(self.api_names)
            a = fb.api[api]
            self.api_tokens[:, 0] += np.bincount(a, minlength=k)
            self.api_tokens[:, 1] += np.bincount(a, r.input_tokens[api], minlength=k)
            self.api_tokens[:, 2] += np.bincount(a, r.output_tokens[api], minlength=k)
        if self.has_prefix:
            self._count_prefix(fb, api)
        self.fail_reasons += np.bincount(fb.reason[failed], minlength=len(FAIL_REASONS))

    def _count_prefix(self, fb: FinishedBlock, api: np.ndarray) -> None:
        """Input and cached input tokens of the streams that declare a prefix."""
        sid, inp = fb.requests.stream_id, fb.requests.input_tokens
        k = len(self.api_names)
        for s, prefix in enumerate(self.stream_prefix):
            mine = np.flatnonzero(sid == s) if prefix is not None else ()
            if not len(mine):
                continue
            tin = inp[mine]
            cached = prefix.cached_tokens(tin)
            self.prefix_tokens += (tin.sum(), cached.sum())
            sel = api[mine]
            if k and sel.any():
                a = fb.api[mine][sel]
                self.api_prefix_tokens[:, 0] += np.bincount(a, tin[sel], minlength=k)
                self.api_prefix_tokens[:, 1] += np.bincount(a, cached[sel], minlength=k)

    def _histograms(self, cls, gpu, api, lat) -> None:
        # Every histogram has the same layout: each latency's buckets are computed once
        # for the block and shared by its (class, destination) histograms.
        selections = []
        for c in range(len(self.class_names)):
            mine = cls == c
            if mine.any():
                selections += [(c, d, sel) for d, sel in (("all", mine & (gpu | api)),
                                                          ("gpu", mine & gpu),
                                                          ("api", mine & api)) if sel.any()]
        if not selections:
            return
        layout = self.hist[(0, "all", "wait")]
        for m in LATENCIES:
            values = lat[m]
            buckets = layout.buckets_of(values)
            finite = buckets >= 0
            for c, d, sel in selections:
                keep = sel & finite
                self.hist[(c, d, m)].add_buckets(buckets[keep], float(values[keep].sum()))

    def _series(self, fb: FinishedBlock, gpu, api, failed) -> None:
        arr = fb.requests.arrival_s
        nb = self.edges.size - 1
        b = np.minimum((arr / self.bin_s).astype(np.int64), nb - 1)
        s = self.series
        s["arrivals"] += np.bincount(b, minlength=nb)
        s["to_api"] += np.bincount(b[api], minlength=nb)
        s["failed"] += np.bincount(b[failed], minlength=nb)
        e = self.edges
        waited = gpu & (fb.start_s > arr)
        s["queue_area"] += interval_integral(e, arr[waited], fb.start_s[waited])
        st, fi, en = fb.start_s[gpu], fb.first_token_s[gpu], fb.end_s[gpu]
        s["running_area"] += interval_integral(e, st, en)
        dur = en - fi
        out = fb.requests.output_tokens[gpu]
        pos = dur > 0
        s["work_s"] += interval_integral(e, fi[pos], en[pos],
                                         out[pos] / dur[pos] * self.decode_s_per_token)
        prefill_s = fb.requests.input_tokens[gpu] * self.prefill_s_per_token
        s["work_s"] += interval_integral(e, fi - prefill_s, fi)

    def _request_table(self, fb: FinishedBlock, lat) -> pa.Table:
        r = fb.requests
        return pa.table({
            "arrival_s": r.arrival_s, "stream": r.stream_id,
            "class": np.asarray(self.class_names, dtype=object)[self.stream_class[r.stream_id]]
            if r.stream_id.size else np.array([], dtype=object),
            "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
            "outcome": np.array(["", "gpu", "api", "failed"], dtype=object)[fb.outcome],
            "fail_reason": np.asarray(FAIL_REASONS, dtype=object)[fb.reason],
            "replica": fb.replica,
            "api": np.asarray(["", *self.api_names], dtype=object)[fb.api + 1],
            "api_attempts": fb.attempts,
            "start_s": fb.start_s, "first_token_s": fb.first_token_s, "end_s": fb.end_s,
            "wait_s": lat["wait"], "ttft_s": lat["ttft"], "e2e_s": lat["e2e"],
            "tpot_s": lat["tpot"],
            "kv_preemptions": (fb.preemptions if fb.preemptions is not None
                               else np.zeros(fb.outcome.size, np.int16)),
        })

    # ----------------------------------------------------------------- results
    def set_capacity(self, up_replica_s: float, up_area: np.ndarray, *,
                     billed_replica_s: float) -> None:
        """A fleet that changed: replica-seconds up in all and per bin, and billed."""
        self.capacity = (float(up_replica_s), np.asarray(up_area, np.float64),
                         float(billed_replica_s))

    def work_s(self) -> float:
        """Replica-seconds of work done on GPUs (prefill and decode at best rates)."""
        t = self.tokens
        return (t["gpu_output"] * self.decode_s_per_token
                + t["gpu_input"] * self.prefill_s_per_token)

    def scalars(self, *, busy_s: float, end_s: float = 0.0) -> dict[str, float]:
        """The flat metrics of this replication (one row of runs.parquet); ``end_s`` is
        when the last request ended (the span is the horizon or that, if later)."""
        row = self._scalars(busy_s, max(self.horizon_s, end_s))
        row["requests_kv_preempted"] = self.kv_preempted
        row["kv_preemptions_total"] = self.kv_preemptions
        if self.capacity is not None:
            up_s, _, billed_s = self.capacity
            row["gpu_utilization"] = _ratio(self.work_s(), up_s)
            row["gpu_decode_utilization"] = _ratio(
                self.tokens["gpu_output"] * self.decode_s_per_token, up_s)
            row["gpu_busy_fraction"] = _ratio(busy_s, up_s)
            row["paid_utilization"] = _ratio(self.work_s(), billed_s)
            row["requests_restarted"] = self.restarted
            row["restarts_total"] = self.restarts
        return row

    def _scalars(self, busy_s: float, span_s: float) -> dict[str, float]:
        c, t = self.counts, self.tokens
        arrived = int(c["arrived"].sum())
        row: dict[str, float] = {
            "requests_arrived": arrived,
            "requests_gpu": int(c["gpu"].sum()),
            "requests_api": int(c["api"].sum()),
            "requests_failed": int(c["failed"].sum()),
            "overflow_share": _ratio(c["api"].sum(), arrived),
            "failure_share": _ratio(c["failed"].sum(), arrived),
            "slo_attainment": _ratio(c["slo_met"].sum(), arrived),
            "slo_violations": arrived - int(c["slo_met"].sum()),
            "input_tokens_total": t["input"], "output_tokens_total": t["output"],
            "tokens_total": t["input"] + t["output"],
            "gpu_input_tokens": t["gpu_input"], "gpu_output_tokens": t["gpu_output"],
            "gpu_utilization": _ratio(t["gpu_output"] * self.decode_s_per_token
                                      + t["gpu_input"] * self.prefill_s_per_token,
                                      self.replicas * span_s),
            "gpu_decode_utilization": _ratio(t["gpu_output"],
                                             self.capacity_tokens_per_s * span_s),
            "gpu_busy_fraction": _ratio(busy_s, self.replicas * span_s),
        }
        for k, reason in enumerate(FAIL_REASONS[1:], start=1):
            row[f"failed.{reason}"] = int(self.fail_reasons[k])
        api_in = api_out = 0.0
        for a, name in enumerate(self.api_names):
            n, tin, tout = self.api_tokens[a]
            n, tin, tout = int(n), float(tin), float(tout)
            row[f"api.{name}.requests"] = n
            row[f"api.{name}.input_tokens"] = tin
            if self.has_prefix:  # declared streams by their prefix, the rest by the share
                pin, pcached = (float(x) for x in self.api_prefix_tokens[a])
                row[f"api.{name}.cached_input_tokens"] = ((tin - pin) * self.api_cached_share[a]
                                                          + pcached)
                row[f"api.{name}.prefix_input_tokens"] = pin
                row[f"api.{name}.prefix_cached_input_tokens"] = pcached
            else:
                row[f"api.{name}.cached_input_tokens"] = tin * self.api_cached_share[a]
            row[f"api.{name}.output_tokens"] = tout
            api_in, api_out = api_in + tin, api_out + tout
        row["api_input_tokens"], row["api_output_tokens"] = api_in, api_out
        if self.has_prefix:
            row["prefix.input_tokens_total"] = float(self.prefix_tokens[0])
            row["prefix.cached_input_tokens_total"] = float(self.prefix_tokens[1])
        for ci, cname in enumerate(self.class_names):
            row.update(self._class_scalars(ci, cname))
        return row

    def _class_scalars(self, ci: int, cname: str) -> dict[str, float]:
        c = self.counts
        n = int(c["arrived"][ci])
        row: dict[str, float] = {
            f"{cname}.requests": n,
            f"{cname}.overflow_share": _ratio(c["api"][ci], n),
            f"{cname}.failure_share": _ratio(c["failed"][ci], n),
            f"{cname}.slo_attainment": _ratio(c["slo_met"][ci], n),
        }
        for d in DESTS:
            prefix = cname if d == "all" else f"{cname}.{d}"
            for m in LATENCIES:
                h = self.hist[(ci, d, m)]
                row[f"{prefix}.{m}_mean_s"] = h.mean()
                p50, p95, p99 = h.quantile(np.array([0.5, 0.95, 0.99]))
                row[f"{prefix}.{m}_p50_s"] = p50
                row[f"{prefix}.{m}_p95_s"] = p95
                row[f"{prefix}.{m}_p99_s"] = p99
        return row

    def timeseries(self) -> dict[str, np.ndarray]:
        s, w = self.series, self.bin_s
        return {
            "t_s": self.edges[:-1].copy(),
            "bin_s": np.full(self.edges.size - 1, w),
            "arrivals": s["arrivals"].copy(),
            "to_api": s["to_api"].copy(),
            "failed": s["failed"].copy(),
            "queue_mean": s["queue_area"] / w,
            "running_mean": s["running_area"] / w,
            "utilization": self._bin_utilization(),
        }

    def _bin_utilization(self) -> np.ndarray:
        work = self.series["work_s"]
        if self.capacity is not None:  # of the replica-time up in each bin (NaN if none)
            up = self.capacity[1]
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(up > 0, work / up, np.nan)
        cap = self.replicas * self.bin_s
        return work / cap if cap > 0 else np.zeros_like(work)

    def requests_table(self) -> pa.Table | None:
        if not self.request_tables:
            return None  # (promote: a block without, say, API requests has null columns)
        return pa.concat_tables(self.request_tables, promote_options="default")


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")
