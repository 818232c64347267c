"""Choosing the CPU thread count from the training step's own timings, while it trains.

Why measure instead of taking one thread per core: a BLAS that splits every product over all cores waits, at
each product, for the slowest of its threads. On an idle machine that costs little; with one other busy
process on a 2-core machine, one of the two threads is parked by the scheduler for a time slice at a time,
and the MNIST MLP's step took 1.7-3.3x as long as on one thread in this module's own trials. Which count
wins depends on the model, the batch and whatever else the machine is doing, so the step itself is the
benchmark:

- trial: every candidate count (1, 2, 4, ... up to the cores) trains for a few tens of milliseconds,
  interleaved over two rounds; the first step after a switch is not timed (pools wake up, caches refill),
  and a count twice as slow as another is dropped from the trial at once (under load its steps cost most);
- hold: the fastest count stays, unless it beats the count already held by less than MARGIN (so an idle
  machine keeps one setting instead of flipping on noise);
- while holding, a held count that slows by SLOWDOWN (load arrived) starts a new trial, and so does time
  spent on fewer threads than the most (the load may have gone): RECHECK_SECONDS, or 20 trials' length where
  steps are slow, doubling up to RECHECK_MAX_SECONDS while rechecks find the same count;
- training over, the count in force before it is put back (restore()).

Results depend on the thread count in the last bits (BLAS splits sums differently), so a run that must be
bit-reproducible fixes the count (`--threads N`, set_threads); the tuner runs only where nobody did.
"""
from __future__ import annotations

import time
from typing import Callable

from xpnet.backends import Backend
from xpnet.backends.threads import cores, current_threads, threads_fixed, use_threads

TRIAL_SECONDS = 0.04  # steps timed per candidate and round: longer than a scheduler's time slice or two
MIN_STEPS = 3  # ... and at least this many
ROUNDS = 2  # candidates are timed in this many interleaved rounds, so a burst of load hits them alike
HOPELESS = 2.0  # a count this much slower than another in a trial is dropped from it at once
MARGIN = 1.15  # another count must be this much faster than the one held to replace it
SLOWDOWN = 1.5  # the held count this much slower than in the trial that chose it starts a new trial
WATCH_SECONDS = 0.25  # the held count's speed is judged over blocks of this much training
RECHECK_SECONDS = 10.0  # on fewer threads than the most, try them all again after this long ...
RECHECK_TRIALS = 20  # ... and at least this many times the last trial's length (slow steps, long trials) ...
RECHECK_MAX_SECONDS = 80.0  # ... doubling while rechecks change nothing (steady load), up to this


def candidates(n: int) -> list[int]:
    """1, 2, 4, ... and n itself: the counts worth trying on n cores."""
    found, c = [], 1
    while c < n:
        found.append(c)
        c *= 2
    return found + [n]


class _Tally:
    """Seconds and rows of a stretch of steps: their ratio is the stretch's time per row (means, not medians:
    a step parked for a time slice costs its whole length, and that is what a thread count is judged by)."""

    def __init__(self) -> None:
        self.seconds, self.rows, self.steps = 0.0, 0, 0

    def add(self, seconds: float, rows: int) -> None:
        self.seconds += seconds
        self.rows += rows
        self.steps += 1

    def per_row(self) -> float:
        return self.seconds / max(self.rows, 1)


class ThreadTuner:
    """Times each step (begin/end around it) and switches the process's thread count to the fastest."""

    def __init__(self, counts: list[int], clock: Callable[[], float] = time.perf_counter,
                 switch: Callable[[int], int] | None = None, before: int | None = None) -> None:
        self.counts, self.clock = sorted(set(counts)), clock
        self.switch = switch or (lambda n: use_threads(n))  # looked up per call: tests stand in for it
        self.before = before  # the count in force before training, put back by restore()
        self.choice = self.counts[-1]  # one thread per core until measured otherwise
        self.running = 0  # the count this tuner last put in force (0: none yet, or restored since)
        self.wanted = 0  # the count the next step runs on
        self.recheck = RECHECK_SECONDS
        self.trial_began = 0.0
        self.plan: list[int] = []  # counts still to time in this trial, in order
        self.tallies: dict[int, _Tally] = {}
        self.stretch = _Tally()  # the count running now, since its switch (trial) or since the last check (hold)
        self.untimed = 0
        self.baseline = 0.0  # the held count's seconds per row in the trial that chose it
        self.chosen_at = 0.0
        self.mark: float | None = None
        self.trials: list[dict[int, float]] = []  # each trial's seconds per row by count, for reports
        self._trial()

    def begin(self) -> None:
        """A step (its batch gather included) starts now: on the count it is to be timed on."""
        if self.wanted != self.running:
            self.running = self.switch(self.wanted)
            self.untimed = 1
        self.mark = self.clock()

    def restore(self) -> None:
        """Put back the count that was in force before training (the user's later work is not ours to slow);
        the next begin() puts the tuner's choice back."""
        if self.running and self.before is not None and self.running != self.before:
            self.switch(self.before)
        self.running = 0

    def end(self, rows: int) -> None:
        """The step begun last has trained `rows` rows."""
        if self.mark is None or rows <= 0:
            return
        seconds, self.mark = self.clock() - self.mark, None
        if self.untimed:  # the first step after a switch: pools wake up, caches refill
            self.untimed -= 1
            return
        self.stretch.add(seconds, rows)
        if self.plan:
            self._time()
        elif self.stretch.seconds >= WATCH_SECONDS:
            self._watch()

    def _trial(self) -> None:
        self.plan = [c for _ in range(ROUNDS) for c in self.counts]
        self.tallies = {c: _Tally() for c in self.counts}
        self.trial_began = self.clock()
        self._run(self.plan[0])

    def _run(self, n: int) -> None:
        self.wanted = n
        self.stretch = _Tally()

    def _time(self) -> None:
        hopeless = self._hopeless(self.stretch)
        if self.stretch.seconds < TRIAL_SECONDS or (self.stretch.steps < MIN_STEPS and not hopeless):
            return
        self.tallies[self.running].add(self.stretch.seconds, self.stretch.rows)
        self.plan.pop(0)
        # a count already twice as slow as another is not timed again: under load its steps are the costly ones
        while self.plan and self._hopeless(self.tallies[self.plan[0]]):
            self.plan.pop(0)
        if self.plan:
            self._run(self.plan[0])
            return
        speeds = {c: t.per_row() for c, t in self.tallies.items()}
        best = min(speeds, key=speeds.__getitem__)
        held = self.choice
        if speeds[best] * MARGIN < speeds[self.choice]:
            self.choice = best
        self._run(self.choice)
        self.baseline, self.chosen_at = speeds[self.choice], self.clock()
        length = self.chosen_at - self.trial_began
        steady = held == self.choice and self.trials
        self.recheck = max(RECHECK_TRIALS * length, min(2 * self.recheck, RECHECK_MAX_SECONDS) if steady
                           else RECHECK_SECONDS)
        self.trials.append(speeds)

    def _hopeless(self, tally: _Tally) -> bool:
        timed = [t.per_row() for t in self.tallies.values() if t.rows and t is not tally]
        return bool(tally.rows and timed and tally.per_row() > HOPELESS * min(timed))

    def _watch(self) -> None:
        slower = self.stretch.per_row() > SLOWDOWN * self.baseline
        self.stretch = _Tally()
        if slower or (self.choice < self.counts[-1] and self.clock() - self.chosen_at > self.recheck):
            self._trial()


def tuner_for(backend: Backend, processes: int = 1) -> ThreadTuner | None:
    """A tuner where xpnet chooses the count: a CPU backend whose threads set_threads governs, more than one
    core, no count fixed by the user, and one process (data-parallel processes get their share of the cores)."""
    cpu = backend.name in ("numpy", "strict") or (backend.name == "torch" and not backend.sync_costly)
    n = cores()
    if not cpu or n < 2 or processes > 1 or threads_fixed() is not None:
        return None
    return ThreadTuner(candidates(n), before=current_threads())
