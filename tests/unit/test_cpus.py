import os
from pathlib import Path

from reasoning_pipeline.cpus import quota_cpus, usable_cpus


def test_a_quota_is_rounded_up_to_whole_cpus() -> None:
    assert quota_cpus("200000 100000\n") == 2
    assert quota_cpus("150000 100000\n") == 2
    assert quota_cpus("50000 100000\n") == 1


def test_no_quota_means_no_limit() -> None:
    assert quota_cpus("max 100000\n") is None


def test_a_pod_limit_below_the_cores_bounds_the_workers(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("100000 100000\n")
    assert usable_cpus(cpu_max) == 1


def test_without_a_cgroup_file_the_affinity_mask_decides(tmp_path: Path) -> None:
    assert usable_cpus(tmp_path / "absent") == len(os.sched_getaffinity(0))


def test_this_process_gets_at_least_one_and_no_more_than_it_may_run_on() -> None:
    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))
