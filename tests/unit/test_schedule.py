"""The scheduler on its own: observed nodes + jobs -> which node builds what, in which order."""

from __future__ import annotations

from provision.buildx.schedule import Job, NodeState, schedule

ARM, AMD = "linux/arm64", "linux/amd64"
FARM = [NodeState("arm64-1", ARM), NodeState("arm64-2", ARM),
        NodeState("amd64-1", AMD), NodeState("amd64-2", AMD)]


def nodes_of(assignments) -> dict[str, str | None]:
    return {a.job.key: a.node for a in assignments}


def test_each_platform_goes_to_a_node_of_that_platform():
    plan = schedule([Job(ARM, ARM), Job(AMD, AMD)], FARM)
    assert nodes_of(plan) == {ARM: "arm64-1", AMD: "amd64-1"}
    assert all(a.wave == 0 and not a.emulated for a in plan)


def test_jobs_spread_over_every_node_then_queue_per_node():
    jobs = [Job(f"t{i}/{ARM}", ARM) for i in range(5)]
    plan = schedule(jobs, FARM)
    assert [a.node for a in plan] == ["arm64-1", "arm64-2", "arm64-1", "arm64-2", "arm64-1"]
    assert [a.wave for a in plan] == [0, 0, 1, 1, 2]
    assert [a.wave for a in schedule(jobs, FARM, per_node=2)] == [0, 0, 0, 0, 1]


def test_a_node_busy_with_another_runs_builds_is_avoided():
    busy = [NodeState("arm64-1", ARM, in_flight=1), NodeState("arm64-2", ARM)]
    assert nodes_of(schedule([Job(ARM, ARM)], busy)) == {ARM: "arm64-2"}


def test_ties_go_to_the_node_with_a_warm_cache():
    warm = [NodeState("arm64-1", ARM), NodeState("arm64-2", ARM, warm=frozenset({"hello"}))]
    [a] = schedule([Job(ARM, ARM, cache_key="hello")], warm)
    assert a.node == "arm64-2" and "warm cache" in a.why
    # but load comes first: a warm node with a build in flight loses to an idle one
    busy_warm = [NodeState("arm64-1", ARM),
                 NodeState("arm64-2", ARM, in_flight=1, warm=frozenset({"hello"}))]
    assert schedule([Job(ARM, ARM, cache_key="hello")], busy_warm)[0].node == "arm64-1"


def test_a_down_node_is_skipped_and_a_platform_with_none_up_says_why():
    down = [NodeState("arm64-1", ARM, up=False, why_down="TERMINATED"),
            NodeState("arm64-2", ARM, up=False, why_down="no SSH answer in 5 s"),
            NodeState("amd64-1", AMD)]
    [arm, amd] = schedule([Job(ARM, ARM), Job(AMD, AMD)], down)
    assert arm.node is None and "arm64-1: TERMINATED" in arm.why
    assert arm.why == ("no node of linux/arm64 is up (arm64-1: TERMINATED; arm64-2: no SSH"
                       " answer in 5 s)")
    assert amd.node == "amd64-1"
    assert schedule([Job(ARM, ARM)], [down[1], NodeState("arm64-3", ARM)])[0].node == "arm64-3"


def test_emulation_only_when_allowed_and_no_native_node_exists():
    amd_only = [NodeState("amd64-1", AMD)]
    [refused] = schedule([Job(ARM, ARM)], amd_only)
    assert refused.node is None and "--allow-emulation" in refused.why
    [emulated] = schedule([Job(ARM, ARM)], amd_only, allow_emulation=True)
    assert emulated.node == "amd64-1" and emulated.emulated



def test_why_says_whether_a_job_starts_at_once_or_waits_and_for_how_many():
    jobs = [Job(f"j{i}", ARM) for i in range(5)]
    assert [a.why for a in schedule(jobs, FARM, per_node=2)] == [
        "idle, least busy of 2", "idle, least busy of 2",
        "starts at once beside 1 build(s), least busy of 2",
        "starts at once beside 1 build(s), least busy of 2",
        "waits for 1 build(s) there, least busy of 2"]


# -- nodes asleep (stopped by idle stop): woken when needed ----------------------------------

def asleep(name: str, platform: str, status: str = "TERMINATED") -> NodeState:
    return NodeState(name, platform, up=False, why_down=f"its VM is {status}", asleep=status)


def test_a_platform_with_only_a_stopped_node_wakes_it():
    [a] = schedule([Job(ARM, ARM)], [asleep("arm64-1", ARM), NodeState("amd64-1", AMD)])
    assert (a.node, a.wake, a.emulated) == ("arm64-1", True, False)
    assert a.why.startswith("wakes it (TERMINATED)")


def test_a_node_up_is_taken_before_a_stopped_one_is_woken():
    nodes = [asleep("arm64-1", ARM), NodeState("arm64-2", ARM)]
    plan = schedule([Job(f"t{i}", ARM) for i in range(3)], nodes)
    # the second job would wait one build on arm64-2, as long as a wake: it waits;
    # the third would queue two deep: arm64-1 is woken for it
    assert [(a.node, a.wake) for a in plan] == [
        ("arm64-2", False), ("arm64-2", False), ("arm64-1", True)]


def test_a_woken_node_then_counts_as_up():
    plan = schedule([Job(f"t{i}", ARM) for i in range(3)], [asleep("arm64-1", ARM, "SUSPENDED")])
    assert [a.node for a in plan] == ["arm64-1"] * 3 and all(a.wake for a in plan)
    assert plan[0].why.startswith("wakes it (SUSPENDED)")
    assert plan[1].why.startswith("woken for an earlier job")


def test_a_native_node_is_woken_rather_than_emulating():
    [a] = schedule([Job(ARM, ARM)], [asleep("arm64-1", ARM), NodeState("amd64-1", AMD)],
                   allow_emulation=True)
    assert (a.node, a.emulated) == ("arm64-1", False)


def test_a_node_down_for_another_reason_is_not_woken():
    down = NodeState("arm64-1", ARM, up=False, why_down="unreachable over ssh")
    [a] = schedule([Job(ARM, ARM)], [down])
    assert a.node is None and "unreachable" in a.why
