"""The engine against an independent reference implementation of the same model.

The reference below is a plain time-stepping-by-event loop (heapq, no SimPy, no virtual
clock): it tracks each running request's remaining tokens explicitly and recomputes the
next event from scratch. It is slow and obvious; the engine must give the same
per-request admission, first-token and completion times to floating-point precision.
"""


import numpy as np
import pytest

from sim.serving.replica import ReplicaSpec
from tests.enginekit import run_engine


def reference(arr, inp, out, rates, cap, kv_cap, prefill_tps, n_rep):
    """Central FCFS queue, prefill stalls decode; least-loaded placement, ties going to the
    replica whose load changed to that value first (the engine's documented rule)."""
    n = len(arr)
    start, first, end = [np.nan] * n, [np.nan] * n, [np.nan] * n
    reps = [{"run": {}, "stall": 0.0, "kv": 0.0} for _ in range(n_rep)]
    queue, i, t = [], 0, 0.0
    changed = list(range(n_rep))  # when each replica's load last changed
    clock = n_rep
    while i < n or queue or any(r["run"] for r in reps):
        # next completion: decoding only after the stall; remaining/rate per replica
        t_done, who = np.inf, None
        for k, r in enumerate(reps):
            if r["run"]:
                s = max(t, r["stall"])
                j = min(r["run"], key=lambda j: (r["run"][j], j))
                tc = s + r["run"][j] / rates[len(r["run"])]
                if tc < t_done:
                    t_done, who = tc, k
        t_arr = arr[i] if i < n else np.inf
        t_new = min(t_done, t_arr)
        for r in reps:  # advance decoding from t to t_new
            if r["run"] and t_new > max(t, r["stall"]):
                dt = t_new - max(t, r["stall"])
                for j in r["run"]:
                    r["run"][j] -= dt * rates[len(r["run"])]
        t = t_new
        if t_done <= t_arr:
            r = reps[who]
            changed[who], clock = clock, clock + 1
            for j in [j for j, left in r["run"].items() if left <= 1e-7]:
                del r["run"][j]
                r["kv"] -= inp[j] + out[j]
                end[j] = t
        else:
            queue.append(i)
            i += 1
        while queue:
            j = queue[0]
            k = min(range(n_rep), key=lambda k: (len(reps[k]["run"]), changed[k]))
            r = reps[k]
            if len(r["run"]) >= cap or r["kv"] + inp[j] + out[j] > kv_cap:
                break
            queue.pop(0)
            changed[k], clock = clock, clock + 1
            r["stall"] = max(t, r["stall"]) + inp[j] / prefill_tps
            r["run"][j] = out[j]
            r["kv"] += inp[j] + out[j]
            start[j], first[j] = t, r["stall"]
    return np.array(start), np.array(first), np.array(end)


@pytest.mark.parametrize("seed,n_rep", [(1, 1), (2, 2), (3, 3)])
def test_engine_matches_reference(seed, n_rep):
    rng = np.random.default_rng(seed)
    n = 300
    arr = np.cumsum(rng.exponential(0.4, n))
    inp = rng.integers(1, 400, n).astype(float)
    out = rng.integers(1, 120, n).astype(float)
    cap, kv_cap, prefill = 4, 900.0, 2000.0
    rates = [0.0, 30.0, 27.0, 25.0, 22.0]
    spec = ReplicaSpec(rate_table=rates, max_batch=cap, kv_capacity_tokens=kv_cap,
                       prefill_tokens_per_s=prefill)
    fb, _, _ = run_engine(arr, out, spec=spec, replicas=n_rep, input_tokens=inp)
    s, f, e = reference(arr, inp, out, rates, cap, kv_cap, prefill, n_rep)
    np.testing.assert_allclose(fb.start_s, s, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(fb.first_token_s, f, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(fb.end_s, e, rtol=1e-9, atol=1e-6)


def _union_length(lo: np.ndarray, hi: np.ndarray) -> float:
    """Total length of the union of the intervals [lo, hi]."""
    total, cur_lo, cur_hi = 0.0, None, None
    for a, b in sorted(zip(lo.tolist(), hi.tolist(), strict=True)):
        if cur_hi is None or a > cur_hi:
            if cur_hi is not None:
                total += cur_hi - cur_lo
            cur_lo, cur_hi = a, b
        else:
            cur_hi = max(cur_hi, b)
    return total + (cur_hi - cur_lo if cur_hi is not None else 0.0)


@pytest.mark.parametrize("cap,n_rep", [(1, 3), (4, 2)])
def test_busy_time_is_the_union_of_service_intervals(cap, n_rep):
    """A replica is busy exactly while it holds a request (admission to completion): the
    engine books busy time when a busy period ends, so check it against the records."""
    rng = np.random.default_rng(11 + cap)
    n = 400
    arr = np.cumsum(rng.exponential(0.5, n))
    inp = rng.integers(1, 300, n).astype(float)
    out = rng.integers(1, 100, n).astype(float)
    spec = ReplicaSpec(rate_table=[0.0, 30.0, 27.0, 25.0, 22.0][:cap + 1], max_batch=cap,
                       prefill_tokens_per_s=3000.0)
    fb, totals, _ = run_engine(arr, out, spec=spec, replicas=n_rep, input_tokens=inp)
    expected = sum(_union_length(fb.start_s[fb.replica == r], fb.end_s[fb.replica == r])
                   for r in range(n_rep))
    assert expected > 0.3 * n_rep * totals.end_s  # loaded enough to test overlap and gaps
    assert totals.busy_s == pytest.approx(expected, rel=1e-9)
