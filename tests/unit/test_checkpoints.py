"""Which checkpoint a restarted trainer resumes from: the newest one that is whole, never a torn one."""

from __future__ import annotations

from pathlib import Path

from reasoning_pipeline import checkpoints


def saved(root: Path, step: int, *, sealed: bool = True) -> Path:
    """A checkpoint as DeepSpeed lays one out (a folder of per-rank files), sealed as rank 0 does."""
    folder = root / f"step-{step}"
    (folder / f"global_step{step}").mkdir(parents=True)
    for rank in (0, 1):
        (folder / f"global_step{step}" / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").write_bytes(
            b"x" * (100 + step)
        )
    (root / "latest").write_text(f"step-{step}")
    if sealed:
        checkpoints.seal(root, f"step-{step}")
    return folder


def test_the_newest_sealed_checkpoint_is_resumed_from(tmp_path: Path) -> None:
    saved(tmp_path, 3)
    saved(tmp_path, 6)
    assert checkpoints.resumable(tmp_path) == checkpoints.Resume("step-6", [])


def test_a_save_killed_before_its_seal_is_passed_over_and_discarded(tmp_path: Path) -> None:
    saved(tmp_path, 3)
    saved(tmp_path, 6, sealed=False)  # DeepSpeed even wrote `latest`: the kill came before the seal
    resume = checkpoints.resumable(tmp_path)
    assert resume == checkpoints.Resume("step-3", ["step-6: not sealed (its save did not finish)"])
    checkpoints.discard_passed_over(tmp_path, resume)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["step-3"]


def test_a_checkpoint_whose_file_changed_after_its_seal_is_not_whole(tmp_path: Path) -> None:
    saved(tmp_path, 3)
    newest = saved(tmp_path, 6)
    shard = next(newest.rglob("*rank_1*"))
    shard.write_bytes(b"x" * 10)  # cut short
    resume = checkpoints.resumable(tmp_path)
    assert resume.tag == "step-3"
    assert resume.passed_over == [
        "step-6: global_step6/zero_pp_rank_1_mp_rank_00_optim_states.pt has 10 bytes, 106 when sealed"
    ]
    shard.unlink()
    assert checkpoints.resumable(tmp_path).passed_over == [
        "step-6: global_step6/zero_pp_rank_1_mp_rank_00_optim_states.pt is missing"
    ]


def test_a_torn_or_dangling_pointer_does_not_stop_training(tmp_path: Path) -> None:
    saved(tmp_path, 3)
    (tmp_path / "latest").write_text("")  # torn while DeepSpeed rewrote it
    (tmp_path / "sealed").write_text("step-99")  # names nothing
    assert checkpoints.resumable(tmp_path).tag == "step-3"


def test_with_nothing_whole_training_starts_from_the_beginning(tmp_path: Path) -> None:
    assert checkpoints.resumable(tmp_path) == checkpoints.Resume(None, [])
    saved(tmp_path, 3)
    saved(tmp_path, 6, sealed=False)
    next((tmp_path / "step-3").rglob("*pp_rank_0*")).unlink()
    assert checkpoints.resumable(tmp_path) == checkpoints.Resume(
        None,
        [
            "step-6: not sealed (its save did not finish)",
            "step-3: global_step3/zero_pp_rank_0_mp_rank_00_optim_states.pt is missing",
        ],
    )


def test_a_checkpoint_from_before_seals_is_resumed_from_by_deepspeeds_pointer(tmp_path: Path) -> None:
    for step in (3, 6):
        saved(tmp_path, step, sealed=False)
    (tmp_path / "latest").write_text("step-3")
    assert checkpoints.resumable(tmp_path).tag == "step-3"
    (tmp_path / "latest").write_text("step-99")
    assert checkpoints.resumable(tmp_path).tag is None


def test_old_checkpoints_go_as_new_ones_come_never_one_a_pointer_names(tmp_path: Path) -> None:
    for step in (1, 2, 3, 10, 11):
        saved(tmp_path, step)
    assert checkpoints.prune(tmp_path, 2) == ["step-1", "step-2", "step-3"]  # by number, not by name
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["step-10", "step-11"]
    (tmp_path / "sealed").write_text("step-10")  # a resumed run points back: that one stays
    (tmp_path / "latest").write_text("step-10")
    assert checkpoints.prune(tmp_path, 1) == []
