"""Class priorities in the waiting room: higher classes start first, FCFS within one."""

import numpy as np

from sim.serving.engine import Engine, FinishedBlock, StreamPolicy
from sim.serving.replica import ReplicaSpec
from sim.workload.requests import RequestBlock


def run_two_classes(priority_batch: int, priority_chat: int):
    # 40 batch jobs at t=0 flood one replica (cap 2); chat requests arrive later.
    n_batch, n_chat = 40, 10
    arr = np.r_[np.zeros(n_batch), 5.0 + np.arange(n_chat) * 3.0]
    out = np.r_[np.full(n_batch, 50.0), np.full(n_chat, 10.0)]
    sid = np.r_[np.zeros(n_batch, int), np.ones(n_chat, int)]
    blk = RequestBlock.from_arrays(arr, np.zeros(arr.size), out, stream_id=sid)
    spec = ReplicaSpec(rate_table=[0.0, 10.0, 10.0], max_batch=2)
    eng = Engine(replicas=1, spec=spec, streams=[StreamPolicy(priority=priority_batch),
                                                 StreamPolicy(priority=priority_chat)])
    got: list[FinishedBlock] = []
    eng.run([blk], got.append)
    fb = got[0]
    wait = fb.start_s - fb.requests.arrival_s
    return wait[fb.requests.stream_id == 1], wait[fb.requests.stream_id == 0]


def test_priority_class_overtakes_waiting_lower_class():
    chat_wait, batch_wait = run_two_classes(priority_batch=1, priority_chat=0)
    # each chat request waits at most for one running request to finish (<= 5 s)
    assert chat_wait.max() <= 5.0 + 1e-9
    # without priorities the chat requests queue behind the whole batch
    fcfs_chat, _ = run_two_classes(priority_batch=0, priority_chat=0)
    assert fcfs_chat.min() > 50.0


def test_fcfs_within_a_class():
    _, batch_wait = run_two_classes(priority_batch=1, priority_chat=0)
    starts = batch_wait  # all arrived at t=0: start order must follow arrival order
    assert np.all(np.diff(starts) >= 0)
