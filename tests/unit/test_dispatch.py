"""The dispatcher with a local shell standing in for each node's SSH hop: the real slot
scripts and flock, one slot directory per node, and builds that take a moment."""

from __future__ import annotations

import threading
import time
from collections import Counter

from provision.buildx.dispatch import Attempt, Dispatcher, WakeFailed
from provision.buildx.schedule import Job, NodeState, schedule
from provision.buildx.slots import Slot
from provision.runner import Cancel, Outcome, run

ARM = "linux/arm64"


def farm(tmp_path, *names: str) -> tuple[list[NodeState], callable]:
    nodes = [NodeState(n, ARM) for n in names]
    return nodes, lambda node, capacity: Slot(["sh", "-c"], directory=str(tmp_path / node),
                                              capacity=capacity)


def run_jobs(dispatcher, assignments, attempt):
    def job(ticket, assignment):
        return lambda progress: dispatcher.run(
            assignment, ticket, progress,
            lambda node, n: attempt(assignment.job.key, node, n))
    return run([(a.job.key, job(i, a)) for i, a in enumerate(assignments)],
               dispatcher.cancel).results


def test_jobs_spread_over_every_node_and_never_exceed_one_per_node(tmp_path):
    nodes, slot = farm(tmp_path, "a1", "a2")
    plan = schedule([Job(f"j{i}", ARM) for i in range(6)], nodes)
    busy: Counter[str] = Counter()
    most: Counter[str] = Counter()
    lock = threading.Lock()

    def attempt(key, node, n):
        with lock:
            busy[node] += 1
            most[node] = max(most[node], busy[node])
        time.sleep(0.2)
        with lock:
            busy[node] -= 1
        return Attempt(Outcome(changes=["build"], extra={"node": node}))

    results = run_jobs(Dispatcher(nodes, 1, Cancel(), slot), plan, attempt)
    assert all(r.changes == ["build"] for r in results.values())
    # both nodes worked (a node freed first takes the next job: not always 3 and 3), never
    # two jobs at once on one
    assert set(Counter(r.extra["node"] for r in results.values())) == {"a1", "a2"}
    assert most == {"a1": 1, "a2": 1}


def test_a_job_lost_with_its_node_moves_once_and_says_where_it_first_ran(tmp_path):
    nodes, slot = farm(tmp_path, "a1", "a2")
    plan = schedule([Job("j0", ARM), Job("j1", ARM), Job("j2", ARM)], nodes)

    def attempt(key, node, n):
        if node == "a1":  # a1's engine dies under whatever runs there
            return Attempt(Outcome(failures=["build"], note="node a1 was lost mid-build"),
                           move=True, node_gone=True)
        return Attempt(Outcome(changes=["build"], extra={"node": node}))

    results = run_jobs(Dispatcher(nodes, 1, Cancel(), slot), plan, attempt)
    assert all(r.changes == ["build"] and r.extra["node"] == "a2" for r in results.values())
    moved = [r.extra["tried"] for r in results.values() if r.extra["tried"]]
    assert moved == [[{"node": "a1", "why": "node a1 was lost mid-build"}]]  # a1 used once


def test_a_build_failing_on_its_own_account_is_not_moved(tmp_path):
    nodes, slot = farm(tmp_path, "a1", "a2")
    tries = []

    def attempt(key, node, n):
        tries.append(node)
        return Attempt(Outcome(failures=["build"], note="RUN false failed"))

    [result] = run_jobs(Dispatcher(nodes, 1, Cancel(), slot),
                        schedule([Job("j0", ARM)], nodes), attempt).values()
    assert result.failures and tries == ["a1"]


def test_a_lost_job_with_no_other_node_fails_saying_it_was_not_retried(tmp_path):
    nodes, slot = farm(tmp_path, "a1")

    def attempt(key, node, n):
        return Attempt(Outcome(failures=["build"], note="node a1 was lost mid-build"),
                       move=True, node_gone=True)

    [result] = run_jobs(Dispatcher(nodes, 1, Cancel(), slot),
                        schedule([Job("j0", ARM)], nodes), attempt).values()
    assert result.failures
    assert result.note == ("node a1 was lost mid-build; not retried: no other node of"
                           " linux/arm64 is left to build on (a1: node a1 was lost mid-build)")


def test_a_node_full_with_another_runs_build_is_left_for_a_free_one(tmp_path):
    nodes, slot = farm(tmp_path, "a1", "a2")
    with slot("a1", 0):  # another run's build on a1, begun after this run looked
        plan = schedule([Job("j0", ARM)], nodes)
        assert plan[0].node == "a1"  # the plan did not know
        [result] = run_jobs(Dispatcher(nodes, 1, Cancel(), slot), plan, lambda k, node, n:
                            Attempt(Outcome(changes=["build"], extra={"node": node}))).values()
    assert result.extra["node"] == "a2"


def test_two_runs_at_once_take_different_nodes(tmp_path):
    nodes, slot = farm(tmp_path, "a1", "a2")
    used, barrier = [], threading.Barrier(2)

    def one_run() -> None:
        barrier.wait()
        plan = schedule([Job("j0", ARM)], nodes)  # both looked before either started
        used.extend(r.extra["node"] for r in run_jobs(
            Dispatcher(nodes, 1, Cancel(), slot), plan,
            lambda k, node, n: (time.sleep(0.5), Attempt(Outcome(
                changes=["build"], extra={"node": node})))[1]).values())

    runs = [threading.Thread(target=one_run) for _ in range(2)]
    for r in runs:
        r.start()
    for r in runs:
        r.join()
    assert sorted(used) == ["a1", "a2"]


def test_ctrl_c_while_waiting_for_a_node_interrupts_the_job(tmp_path):
    nodes, slot = farm(tmp_path, "a1")
    cancel = Cancel()
    with slot("a1", 0):  # full, for as long as the test holds it
        threading.Timer(0.5, cancel.set).start()
        started = time.monotonic()
        [result] = run_jobs(Dispatcher(nodes, 1, cancel, slot),
                            schedule([Job("j0", ARM)], nodes), lambda *a: None).values()
    assert result.interrupted and time.monotonic() - started < 5


def test_a_job_moved_while_its_node_still_answers_leaves_the_node_to_the_others(tmp_path):
    """A build cut off on a node that answers again (its ssh connection dropped once) moves,
    but the node is not given up: the next job may still use it."""
    nodes, slot = farm(tmp_path, "a1", "a2")
    cut: list[str] = []

    def attempt(key, node, n):
        if key == "j0" and n == 0:
            cut.append(node)
            return Attempt(Outcome(failures=["build"], note=f"node {node} was lost"), move=True)
        return Attempt(Outcome(changes=["build"], extra={"node": node}))

    dispatcher = Dispatcher(nodes, 1, Cancel(), slot)
    results = run_jobs(dispatcher, schedule([Job("j0", ARM)], nodes), attempt)
    assert results["j0"].extra["tried"] == [{"node": cut[0], "why": f"node {cut[0]} was lost"}]
    assert dispatcher.lost == {}


def test_a_node_lost_on_the_retry_is_given_up_too(tmp_path):
    nodes, slot = farm(tmp_path, "a1", "a2")
    dispatcher = Dispatcher(nodes, 1, Cancel(), slot)
    run_jobs(dispatcher, schedule([Job("j0", ARM)], nodes), lambda k, node, n: Attempt(
        Outcome(failures=["build"], note=f"{node} lost"), move=True, node_gone=True))
    assert set(dispatcher.lost) == {"a1", "a2"}


def test_an_unexpected_error_taking_a_slot_never_leaves_the_node_looking_taken(tmp_path):
    nodes, slot = farm(tmp_path, "a1")
    broken = iter([OSError("Too many open files")])

    def flaky_slot(node, capacity):
        error = next(broken, None)
        if error:
            raise error
        return slot(node, capacity)

    dispatcher = Dispatcher(nodes, 1, Cancel(), flaky_slot)
    results = run_jobs(dispatcher, schedule([Job("j0", ARM), Job("j1", ARM)], nodes),
                       lambda k, node, n: Attempt(Outcome(changes=["build"])))
    assert sorted(bool(r.failures) for r in results.values()) == [False, True]
    assert dispatcher.ours == {"a1": 0}


def test_a_nodes_slot_goes_straight_to_the_next_job_of_the_run_and_is_let_go_at_the_end(
        tmp_path):
    """No round trip between two builds on one node: the slot is handed over, and the node
    is seen busy throughout (another run cannot slip in between); freed when the run ends."""
    nodes, slot = farm(tmp_path, "a1")
    opened: list[str] = []

    def counted(node, capacity):
        opened.append(node)
        return slot(node, capacity)

    dispatcher = Dispatcher(nodes, 1, Cancel(), counted)
    results = run_jobs(dispatcher, schedule([Job(f"j{i}", ARM) for i in range(4)], nodes),
                       lambda k, node, n: (time.sleep(0.05), Attempt(
                           Outcome(changes=["build"])))[1])
    assert all(r.changes for r in results.values()) and opened == ["a1"]
    dispatcher.close()
    with slot("a1", 1):  # let go: the node's one slot can be taken again
        pass


def preempted(node: str) -> Attempt:
    return Attempt(Outcome(failures=["build"], note=f"its spot VM was preempted ({node})"),
                   move=True, node_gone=True, restart=True)


def test_a_preempted_job_moves_to_another_node_of_its_platform_first(tmp_path):
    nodes, slot = farm(tmp_path, "a1", "a2")
    tries = []

    def attempt(key, node, n):
        tries.append(node)
        return preempted(node) if n == 0 else Attempt(Outcome(changes=["build"],
                                                             extra={"node": node}))

    [result] = run_jobs(Dispatcher(nodes, 1, Cancel(), slot),
                        schedule([Job("j0", ARM)], nodes), attempt).values()
    assert tries == ["a1", "a2"] and result.extra["node"] == "a2"


def test_a_preempted_job_with_no_other_node_is_retried_on_its_node_once(tmp_path):
    nodes, slot = farm(tmp_path, "a1")
    tries = []

    def attempt(key, node, n):
        tries.append((node, n))
        return preempted(node) if n == 0 else Attempt(Outcome(changes=["build"],
                                                             extra={"node": node}))

    [result] = run_jobs(Dispatcher(nodes, 1, Cancel(), slot),
                        schedule([Job("j0", ARM)], nodes), attempt).values()
    assert tries == [("a1", 0), ("a1", 1)]
    assert result.changes == ["build"]
    assert result.extra["tried"] == [{"node": "a1", "why": "its spot VM was preempted (a1)"}]


def test_a_job_preempted_twice_is_not_retried_again(tmp_path):
    nodes, slot = farm(tmp_path, "a1")
    tries = []

    def attempt(key, node, n):
        tries.append(n)
        return preempted(node)

    [result] = run_jobs(Dispatcher(nodes, 1, Cancel(), slot),
                        schedule([Job("j0", ARM)], nodes), attempt).values()
    assert tries == [0, 1] and result.failures


def test_a_node_is_woken_before_its_slot_is_taken_and_one_that_does_not_wake_is_left(tmp_path):
    nodes, slot = farm(tmp_path, "a1", "a2")
    woken = []

    def wake(node, progress):
        woken.append(node)
        if node == "a1":
            raise WakeFailed("its engine did not answer")

    [result] = run_jobs(Dispatcher(nodes, 1, Cancel(), slot, wake=wake),
                        schedule([Job("j0", ARM)], nodes), lambda k, node, n: Attempt(
                            Outcome(changes=["build"], extra={"node": node}))).values()
    assert woken == ["a1", "a2"] and result.extra["node"] == "a2"


def test_jobs_queued_for_a_preempted_node_wait_for_it_rather_than_fail(tmp_path):
    # One spot node, two jobs: the first is preempted. The second, waiting for the node,
    # must not be told "no node is left": it takes the node once woken, as does the retry.
    nodes, slot = farm(tmp_path, "a1")
    woken, tries = [], []
    asleep = set()

    def wake(node, progress):
        if node in asleep:
            woken.append(node)
            asleep.discard(node)

    def attempt(key, node, n):
        tries.append((key, n))
        if key == "j0" and n == 0:
            asleep.add(node)  # what judged() does: waker.again(node)
            return preempted(node)
        return Attempt(Outcome(changes=["build"], extra={"node": node}))

    results = run_jobs(Dispatcher(nodes, 1, Cancel(), slot, wake=wake),
                       schedule([Job("j0", ARM), Job("j1", ARM)], nodes), attempt)
    assert all(r.changes == ["build"] for r in results.values()), results
    assert woken == ["a1"] and sorted(tries) == [("j0", 0), ("j0", 1), ("j1", 0)]


def test_a_retry_whose_node_does_not_wake_fails_with_both_causes(tmp_path):
    nodes, slot = farm(tmp_path, "a1")
    state = {"preempted": False}

    def wake(node, progress):
        if state["preempted"]:
            raise WakeFailed("its VM would not start")

    def attempt(key, node, n):
        state["preempted"] = True
        return preempted(node)

    [result] = run_jobs(Dispatcher(nodes, 1, Cancel(), slot, wake=wake),
                        schedule([Job("j0", ARM)], nodes), attempt).values()
    assert result.failures and result.note.startswith("its spot VM was preempted (a1); not"
                                                      " retried: no node of linux/arm64")
    assert "did not wake (its VM would not start)" in result.note
