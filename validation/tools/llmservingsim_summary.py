"""Derive the load-point summary of one LLMServingSim `bench/examples/<hw>/<model>/`
vLLM run.

Reads, from a git directory of casys-kaist/LLMServingSim (e.g. the snapshot `fetch` brings):
  vllm/requests.jsonl       per-request engine timestamps written by the upstream `bench` harness
  vllm/meta.json            vLLM version, engine kwargs, KV-cache size, GPU name
  validation/summary.txt    the upstream's own vLLM-vs-simulator table (vLLM column = measured)

Prints one JSON object: the latency figures exactly as summary.txt prints them (its vLLM column),
plus the fields the table does not give, computed from requests.jsonl:
  completed, input_len_mean, output_len_mean,
  duration_s (first queued_ts -> last last_token_ts),
  request_throughput = completed / duration_s,
  output_throughput_tok_s = sum(output) / duration_s,
  arrival_span_s (first -> last arrival_time),
  offered_rate_per_s = (completed - 1) / arrival_span_s,
and a cross-check: mean TTFT / TPOT / E2E recomputed from the timestamps with the definitions
TTFT = first_token_ts - queued_ts, TPOT = (last_token_ts - first_token_ts) / (output_toks - 1),
E2E = last_token_ts - queued_ts (these reproduce summary.txt's vLLM column).

Usage:
  python validation/tools/llmservingsim_summary.py GIT_DIR COMMIT \
      bench/examples/RTXPRO6000/Qwen3-32B
"""

import json
import statistics
import subprocess
import sys


def show(git_dir: str, commit: str, path: str) -> str:
    return subprocess.run(["git", "--git-dir", git_dir, "show", f"{commit}:{path}"],
                          capture_output=True, text=True, check=True).stdout


def summary_table(text: str) -> dict[str, str]:
    """'TTFT Mean  7097.2  6815.7  -4.0%' -> {'TTFT Mean': '7097.2'}: the vLLM column, as
    printed."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0] in ("TTFT", "TPOT", "Latency"):
            out[f"{parts[0]} {parts[1]}"] = parts[2]
    return out


def main() -> int:
    git_dir, commit, base = sys.argv[1:4]
    text = show(git_dir, commit, f"{base}/vllm/requests.jsonl")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    meta = json.loads(show(git_dir, commit, f"{base}/vllm/meta.json"))
    table = summary_table(show(git_dir, commit, f"{base}/validation/summary.txt"))
    start = min(r["queued_ts"] for r in rows)
    end = max(r["last_token_ts"] for r in rows)
    duration = end - start
    arrivals = sorted(r["arrival_time"] for r in rows)
    out_tokens = sum(r["output_toks"] for r in rows)
    ttft = [(r["first_token_ts"] - r["queued_ts"]) * 1e3 for r in rows]
    e2e = [(r["last_token_ts"] - r["queued_ts"]) * 1e3 for r in rows]
    tpot = [(r["last_token_ts"] - r["first_token_ts"]) * 1e3 / (r["output_toks"] - 1)
            for r in rows if r["output_toks"] > 1]
    print(json.dumps({
        "summary_txt_vllm_column": table,
        "completed": len(rows),
        "input_len_mean": statistics.fmean(r["input_toks"] for r in rows),
        "output_len_mean": statistics.fmean(r["output_toks"] for r in rows),
        "duration_s": duration,
        "request_throughput": len(rows) / duration,
        "output_throughput_tok_s": out_tokens / duration,
        "arrival_span_s": arrivals[-1] - arrivals[0],
        "offered_rate_per_s": (len(rows) - 1) / (arrivals[-1] - arrivals[0]),
        "recomputed_mean_ttft_ms": statistics.fmean(ttft),
        "recomputed_mean_tpot_ms": statistics.fmean(tpot),
        "recomputed_mean_e2e_ms": statistics.fmean(e2e),
        "vllm_version": meta.get("vllm_version"),
        "engine_kwargs": meta.get("engine_kwargs"),
        "kv_cache": meta.get("kv_cache"),
        "device_name": (meta.get("hardware") or {}).get("device_name"),
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
