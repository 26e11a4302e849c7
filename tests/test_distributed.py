"""gpt2_jax/distributed.py without starting jax.distributed: flag checks, the one-process no-ops,
and the watchdog's verdicts over a fake coordination-service key-value store (a peer that stops
beating, one that reports a failure, one that finished). Real processes: tests/test_multihost.py."""
import time

import pytest

from gpt2_jax import distributed
from gpt2_jax.errors import ConfigError


class FakeKV:
    """The two key-value calls the watchdog makes, on a dict."""

    def __init__(self):
        self.kv = {}

    def key_value_set(self, key, value, allow_overwrite=False):
        assert allow_overwrite
        self.kv[key] = value

    def key_value_dir_get(self, prefix):
        return [(k, v) for k, v in self.kv.items() if k.startswith(prefix)]


@pytest.mark.parametrize("args, match", [
    (("127.0.0.1:1234", 0, 0), r"coordinator address 127.0.0.1:1234 given: also pass the number of processes"),
    (("127.0.0.1:1234", 2, 2), r"process_id=2\)"),
    (("", 2, 0), r"num_processes=2, process_id=0 given without a coordinator address"),
])
def test_initialize_refuses_incomplete_flags(args, match):
    with pytest.raises(ConfigError, match=match):
        distributed.initialize(*args)


def test_one_process_needs_nothing(monkeypatch):
    monkeypatch.delenv("TPU_WORKER_HOSTNAMES", raising=False)
    assert distributed.initialize() is False  # no flags, not a TPU slice: plain single-process JAX
    assert distributed.fail_fast(2, "ConfigError: x") == 2  # returns instead of exiting
    assert distributed.from_process_0(1.5, float("nan"))[0] == 1.5
    distributed.sync("nothing to wait for")


def _watchdog(me=0, n=3, stale_after=0.5):
    client = FakeKV()
    dog = distributed._Watchdog(client, me, n, stale_after, interval=0.05)
    died = []
    dog.die = died.append  # instead of printing and os._exit(1)
    return client, dog, died


def _beat(client, p, value):
    client.key_value_set(f"{distributed._PREFIX}alive/{p}", str(value), allow_overwrite=True)


def _run_until_dead(client, dog, died, beat_1, seconds=5):
    """Run the watchdog thread while `beat_1(t)` says whether process 1 beats; its verdict."""
    dog.thread.start()
    t0 = time.time()
    while not died and time.time() < t0 + seconds:
        if beat_1(time.time() - t0):
            _beat(client, 1, time.time())
        time.sleep(0.02)
    assert died, "the watchdog never fired"
    return died[0], time.time() - t0


def test_watchdog_names_a_peer_that_stopped_beating():
    client, dog, died = _watchdog(n=2, stale_after=0.5)
    message, at = _run_until_dead(client, dog, died, beat_1=lambda t: t < 1.0)
    assert message.startswith("process 1 has not reported for 1 s: it died (killed, out of memory, preempted) or "
                              "its host is unreachable; stopping this process too. Rerun the job on all hosts")
    assert 1.4 < at < 3  # 0.5 s after its last beat (+ polling), not before


def test_watchdog_exits_on_a_failure_report_and_ignores_a_finished_peer():
    client, dog, died = _watchdog(n=3, stale_after=0.3)
    client.key_value_set(f"{distributed._PREFIX}done/2", "1", allow_overwrite=True)  # 2 finished: not watched

    def beat_1(t):  # process 1 is alive, and after 1 s reports an error
        if t > 1.0:
            client.key_value_set(f"{distributed._PREFIX}failed/1", "InputError: limit=0 must be a positive integer",
                                 allow_overwrite=True)
        return True
    message, at = _run_until_dead(client, dog, died, beat_1)
    assert message.startswith("process 1 failed (InputError: limit=0 must be a positive integer); see its log for "
                              "the cause; stopping this process too.")
    assert 1.0 < at < 2
    assert f"{distributed._PREFIX}alive/0" in client.kv  # it beat for us meanwhile


def test_after_an_error_the_dead_peer_is_named_first():
    client, dog, died = _watchdog(n=2)
    dog.seen = {1: ("7", time.monotonic() - 5)}  # process 1 silent for 5 s
    dog.after_error("JaxRuntimeError: Gloo all-reduce failed: Connection closed by peer")
    assert died == ["process 1 has not reported for 5 s: it died (killed, out of memory, preempted) or its host "
                    "is unreachable; this process then failed (JaxRuntimeError: Gloo all-reduce failed: Connection "
                    "closed by peer). Rerun the job on all hosts to resume from its newest checkpoint."]
    assert client.kv[f"{distributed._PREFIX}failed/0"].startswith("JaxRuntimeError")  # the peers are told
