"""The benchmark scenario: diurnal chat plus a nightly batch on 16 replicas.

Sizing. A replica of ``llama-70b-2xa100`` spends ``E[input] / prefill`` seconds on a chat
request's prefill (1155 / 2760 = 0.42 s, the whole GPU) and ``E[output] / saturated
decode`` seconds of a full batch's decode time (211 / 443 = 0.48 s): about 0.89 s of
replica time per request. The diurnal shape (peak/trough 4, weekends at 0.6) puts the
weekday peak at 1.81x the weekly mean rate, so a mean of 6.4 req/s peaks at 11.6 req/s,
i.e. ~65% of 16 replicas' work capacity (11.6 x 0.89 / 16). The measured peak-hour
utilization (decode tokens over saturated capacity) is printed with the pipeline case.
The nightly batch adds 20,000 long-prompt requests at 02:00 (6 h deadline, never
overflowed); interactive chat overflows to GPT-4o after waiting 2 s. A 30-day month is
~17M requests.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["Unavailable", "PROFILE", "REPLICAS", "CHAT_MEAN_RATE", "PEAK_FACTOR",
           "CHAT_INPUT", "CHAT_OUTPUT", "experiment_dict", "build_experiment"]

PROFILE = "llama-70b-2xa100"
REPLICAS = 16
CHAT_MEAN_RATE = 6.4  # req/s, weekly mean
PEAK_TO_TROUGH = 4.0
WEEKEND_FACTOR = 0.6
# Weekday peak / weekly mean: raised cosine peak 2r/(r+1), times the weekday factor.
PEAK_FACTOR = 2 * PEAK_TO_TROUGH / (PEAK_TO_TROUGH + 1) * 7 / (5 + 2 * WEEKEND_FACTOR)
CHAT_INPUT = {"kind": "lognormal", "mean": 1155, "sigma": 0.99, "max": 16384}
CHAT_OUTPUT = {"kind": "lognormal", "mean": 211, "sigma": 0.86}

_EXPERIMENT: dict[str, Any] = {
    "name": "benchmark-pipeline",
    "description": "diurnal chat + nightly batch on 16 replicas, chat overflows to GPT-4o",
    "horizon": "30d",
    "replications": 1,
    "seed": 11,
    "workload": {"streams": [
        {"name": "chat", "class": "interactive",
         "arrivals": {"kind": "diurnal", "mean_rate_per_s": CHAT_MEAN_RATE, "peak_hour": 14,
                      "peak_to_trough": PEAK_TO_TROUGH, "weekend_factor": WEEKEND_FACTOR},
         "input_tokens": CHAT_INPUT, "output_tokens": CHAT_OUTPUT,
         "slo": {"ttft_s": 2.0, "tpot_s": 0.1}},
        {"name": "nightly", "class": "batch",
         "arrivals": {"kind": "batch", "at": "02:00", "every": "1d", "count": 20000,
                      "spread_s": "30m"},
         "input_tokens": {"kind": "lognormal", "mean": 2600, "sigma": 0.5, "max": 8192},
         "output_tokens": {"kind": "lognormal", "mean": 290, "sigma": 0.6},
         "slo": {"deadline_s": "6h"}},
    ]},
    "fleet": {"profile": PROFILE, "replicas": REPLICAS},
    "router": {"policy": "least_loaded"},
    "overflow": {"interactive": {"when": "wait_exceeds", "threshold_s": 2.0, "to": "gpt-4o"},
                 "batch": {"when": "never"}},
    "api": {"gpt-4o": {"base": "gpt-4o", "rpm": 10000, "tpm": 30000000}},
    "costs": {"pricing": "on_demand", "usd_per_gpu_hour": {"low": 2.5, "high": 3.5},
              "engineering_fte": 0.75, "usd_per_fte_year": {"low": 150000, "high": 200000},
              "infra_usd_per_month": {"low": 250, "high": 1000}},
    "output": {"per_request": False},
}


class Unavailable(Exception):
    """A case cannot run here (e.g. part of the simulator is missing); not a crash."""


def experiment_dict(horizon_s: float | str = "30d", replications: int = 1) -> dict[str, Any]:
    """The scenario as an experiment file's data."""
    data = copy.deepcopy(_EXPERIMENT)
    data["horizon"] = horizon_s
    data["replications"] = replications
    return data


def build_experiment(horizon_s: float | str = "30d", replications: int = 1) -> Any:
    """The scenario, loaded as a user's file would be (``sim.experiment.config.load_experiment``).

    Raises :class:`Unavailable` if the simulator's stack cannot load it.
    """
    try:
        import yaml

        from sim.experiment.config import load_experiment
    except ImportError as exc:
        raise Unavailable(f"cannot import the experiment loader: {exc}") from exc
    with tempfile.TemporaryDirectory(prefix="capsim-bench-") as tmp:
        path = Path(tmp) / "benchmark.yaml"
        path.write_text(yaml.safe_dump(experiment_dict(horizon_s, replications),
                                       sort_keys=False), encoding="utf-8")
        try:
            return load_experiment(path)
        except ImportError as exc:
            raise Unavailable(f"simulator stack not importable: {exc}") from exc
        except Exception as exc:  # a half-written stack fails in many ways
            raise Unavailable(f"cannot load the experiment: {type(exc).__name__}: "
                              f"{exc}") from exc
