"""The runner on its own: isolation, a result for every job, nothing printed after the recap."""

from __future__ import annotations

import threading

from provision.runner import Cancel, Outcome, run


def test_a_failing_job_is_that_jobs_alone_and_a_broken_describe_loses_nothing():
    def boom(progress):
        raise RuntimeError("disk on fire")

    def broken_describe(exc):
        raise ValueError("describe is broken")

    outcome = run([("a", boom), ("b", lambda p: Outcome(converged=["vm"]))], Cancel(),
                  describe=broken_describe)
    assert outcome.results["a"].failed == 1 and "disk on fire" in outcome.results["a"].note
    assert outcome.results["b"].ok == 1 and outcome.exit_code == 1


def test_a_job_left_in_flight_is_reported_and_prints_nothing_after_the_recap():
    cancel, said, release = Cancel(), [], threading.Event()

    def stuck(progress):
        progress("creating vm in us-central1-a")
        release.wait(5)  # a network call that does not return
        progress("still talking after the recap")
        return Outcome(changes=["vm"])

    threading.Timer(0.2, cancel.set).start()
    outcome = run([("a", stuck)], cancel, say=lambda key, text: said.append(text), grace=0.3)
    release.set()
    threading.Event().wait(0.2)
    assert outcome.exit_code == 130
    assert outcome.results["a"].note == "interrupted while creating vm in us-central1-a"
    assert said == ["creating vm in us-central1-a"]


def test_an_outcome_counts_only_the_changes_reached_before_a_failure():
    items = ("daemon.json", "docker engine", "docker service", "docker group", "verify")
    planned = ["daemon.json", "docker engine", "docker group"]
    failed = Outcome.of(items, planned, failed="docker engine")
    assert failed.changes == ["daemon.json"] and failed.failures == ["docker engine"]
    assert failed.converged == [] and (failed.ok, failed.changed, failed.failed) == (0, 1, 1)
    done = Outcome.of(items, planned)
    assert (done.ok, done.changed, done.failed) == (2, 3, 0)
