"""Training chooses its CPU thread count from its own step timings: fast on an idle machine, and not collapsing
when another process takes a core. Simulated steps on a fake clock check the decisions; a real fit checks the
wiring. No timing of this machine is asserted."""
from __future__ import annotations

import numpy as np
import pytest

import xpnet as xn
from xpnet.backends import get_backend, threads
from xpnet.errors import DivergedError
from xpnet.training import thread_tuning as tt
from xpnet.training.step import EagerRunner, Step, make_state
from xpnet.training.history import History


class Machine:
    """A fake clock and a step whose cost (seconds per 128-row step) depends on the thread count in force."""

    def __init__(self, cost: dict[int, float]) -> None:
        self.now, self.cost, self.running, self.switches, self.steps_at = 0.0, dict(cost), 2, [], {}

    def clock(self) -> float:
        return self.now

    def switch(self, n: int) -> int:
        self.switches.append(n)
        self.running = n
        return n

    def train(self, tuner: tt.ThreadTuner, steps: int, rows: int = 128) -> None:
        for _ in range(steps):
            tuner.begin()
            self.now += self.cost[self.running] * rows / 128
            self.steps_at[self.running] = self.steps_at.get(self.running, 0) + 1
            tuner.end(rows)
            self.now += 1e-5  # the caller's own time between steps, which the tuner must not count


def tuner(machine: Machine, counts=(1, 2)) -> tt.ThreadTuner:
    return tt.ThreadTuner(list(counts), clock=machine.clock, switch=machine.switch)


@pytest.mark.parametrize("n, expected", [(1, [1]), (2, [1, 2]), (6, [1, 2, 4, 6]), (16, [1, 2, 4, 8, 16])])
def test_the_counts_tried(n, expected):
    assert tt.candidates(n) == expected


def test_a_busy_core_makes_it_take_one_thread():
    m = Machine({1: 1.2e-3, 2: 4e-3})  # two threads collapse: one of them waits on a parked core
    t = tuner(m)
    m.train(t, 2000)
    assert t.choice == 1 and m.running == 1
    assert m.steps_at[2] < 40  # the slow count cost only its trial
    assert len(t.trials) == 1


def test_an_idle_machine_keeps_all_cores_without_flipping():
    m = Machine({1: 1.05e-3, 2: 1e-3})
    t = tuner(m)
    m.train(t, 5000)
    assert t.choice == 2 and m.running == 2
    assert len(t.trials) == 1 and m.switches == [1, 2, 1, 2]  # two rounds of each, then it stayed


def test_a_clear_win_for_fewer_threads_is_taken_and_a_small_one_is_not():
    m = Machine({1: 1e-3, 2: 1.3e-3})
    t = tuner(m)
    m.train(t, 500)
    assert t.choice == 1
    m2 = Machine({1: 1e-3, 2: 1.1e-3})  # within the margin: noise on a real machine, keep the cores
    t2 = tuner(m2)
    m2.train(t2, 500)
    assert t2.choice == 2


def settled(cost: dict[int, float], choice: int) -> tuple[Machine, tt.ThreadTuner]:
    """A tuner that has trained 1000 steps at these costs and chose `choice`."""
    m = Machine(cost)
    t = tuner(m)
    m.train(t, 1000)
    assert t.choice == choice
    return m, t


def test_load_that_arrives_mid_run_is_noticed_within_a_second():
    m, t = settled({1: 1.1e-3, 2: 1e-3}, 2)
    m.cost[2] = 5e-3  # another process starts
    arrived = m.now
    while t.choice == 2:
        m.train(t, 1)
        assert m.now - arrived < 1.0
    assert m.running == 1


def test_load_that_goes_away_gives_the_cores_back():
    m, t = settled({1: 1.1e-3, 2: 5e-3}, 1)
    m.cost[2] = 0.7e-3  # the other process ended
    m.train(t, int(tt.RECHECK_SECONDS / 1.1e-3) + 500)
    assert t.choice == 2 and m.running == 2


def test_time_outside_the_steps_is_not_counted():
    m = Machine({1: 1e-3, 2: 1e-3})
    t = tuner(m)
    for _ in range(200):
        t.begin()
        m.now += 1e-3
        t.end(128)
        m.now += 1.0 if m.running == 1 else 0.0  # a slow progress bar while on one thread: not the step's fault
    assert t.choice == 2


def test_each_count_is_timed_in_two_rounds_and_a_hopeless_one_is_dropped():
    m = Machine({1: 1e-3, 2: 1e-3, 4: 10e-3})
    t = tuner(m, (1, 2, 4))
    m.train(t, 400)
    assert m.switches[:4] == [1, 2, 4, 1]  # round 1 in order; 4 threads, ten times slower, never comes back
    assert 4 not in m.switches[3:]


def test_partial_batches_are_compared_per_row():
    m = Machine({1: 1e-3, 2: 1e-3})
    t = tuner(m)
    for i in range(300):
        rows = 32 if m.running == 1 else 128  # a quarter of the rows, a quarter of the time: equal speed
        t.begin()
        m.now += m.cost[m.running] * rows / 128
        t.end(rows)
    assert t.choice == 2


@pytest.fixture
def free():
    fixed = threads.threads_fixed()
    threads.free_threads()
    yield
    threads.set_threads(fixed or threads.cores())


def test_who_gets_a_tuner(free, monkeypatch):
    numpy, strict = get_backend("numpy"), get_backend("strict")
    monkeypatch.setattr(tt, "cores", lambda: 4)
    assert tt.tuner_for(numpy).counts == [1, 2, 4]
    assert tt.tuner_for(strict) is not None
    assert tt.tuner_for(numpy, processes=2) is None  # data-parallel processes split the cores among them

    class Gpu:
        name, sync_costly = "cupy", True
    assert tt.tuner_for(Gpu()) is None
    monkeypatch.setattr(tt, "cores", lambda: 1)
    assert tt.tuner_for(numpy) is None
    monkeypatch.setattr(tt, "cores", lambda: 4)
    threads.set_threads(3)  # the user's count is kept
    assert tt.tuner_for(numpy) is None and threads.current_threads() == 3


def test_a_real_fit_runs_its_steps_through_the_tuner(free, monkeypatch):
    monkeypatch.setattr(tt, "cores", lambda: 2)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2048, 20)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = xn.Sequential([xn.Dense(20, 16), xn.ReLU(), xn.Dense(16, 2)])
    opt = xn.SGD(model.parameters(), lr=0.1)
    backend = get_backend("numpy")
    step = Step(model, xn.SoftmaxCrossEntropy(), opt, make_state("checked", backend, opt, "stop", History()))
    runner = EagerRunner(step, backend, x, y, 16)
    assert runner.tuner is not None
    assert sum(runner.steps(1, None, 0)) == 2048
    for epoch in range(2, 200):  # tiny steps: a trial needs some tens of epochs of them
        if runner.tuner.trials:
            break
        list(runner.steps(epoch, None, 0))
    assert runner.tuner.trials and set(runner.tuner.trials[0]) == {1, 2}  # both counts were timed on real steps
    assert threads.current_threads() in runner.tuner.counts


def test_nothing_switches_before_the_first_step_and_training_gives_the_count_back():
    m = Machine({1: 1e-3, 2: 1e-3})
    t = tt.ThreadTuner([1, 2], clock=m.clock, switch=m.switch, before=2)
    assert m.switches == []  # building a runner changes nothing
    m.cost[2] = 5e-3
    m.train(t, 300)
    assert m.running == 1
    t.restore()
    assert m.running == 2 and m.switches[-1] == 2
    m.train(t, 1)  # the next step is the tuner's again
    assert m.running == 1


def test_fit_puts_the_threads_back_even_when_it_fails(free, monkeypatch):
    from threadpoolctl import threadpool_info

    monkeypatch.setattr(tt, "cores", lambda: 2)
    threads.use_threads(2)
    switched = []
    monkeypatch.setattr(tt, "use_threads", lambda n: switched.append(n) or threads.use_threads(n))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 8)).astype(np.float32)
    model = xn.Sequential([xn.Dense(8, 4), xn.ReLU(), xn.Dense(4, 1)])
    y = x[:, :1] * 1e30  # an overflowing loss: fit stops with an error after its first steps
    with pytest.raises(DivergedError, match="loss became inf"), np.errstate(over="ignore"):
        xn.fit(model, xn.MSE(), xn.SGD(model.parameters(), lr=1.0), (x, y), epochs=3, batch_size=8)
    assert switched and switched[0] == 1  # it did choose (1 is tried first) ...
    assert threads.current_threads() == 2  # ... and gave the count back
    assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == {2}


def test_rechecks_back_off_while_the_load_stays_and_scale_with_slow_steps():
    m, t = settled({1: 1.1e-3, 2: 5e-3}, 1)
    intervals = []
    for _ in range(4):
        before = len(t.trials)
        while len(t.trials) == before:
            m.train(t, 100)
        intervals.append(t.recheck)
    assert intervals == [20.0, 40.0, 80.0, 80.0]  # steady load: each recheck waits twice as long, up to 80 s
    slow = Machine({1: 1.0, 2: 4.0})  # a second a step: a trial takes tens of seconds
    ts = tuner(slow)
    slow.train(ts, 60)
    assert ts.choice == 1 and ts.recheck >= tt.RECHECK_TRIALS * 10
