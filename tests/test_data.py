"""Labels from folder names, group assignment and group-wise splits (no data or detector needed)."""
from __future__ import annotations

from pathlib import Path

import pytest

from liveness_edge.runtime.errors import SplitLeak

from liveness_edge.train.data import (
    Sample,
    Split,
    assert_disjoint,
    assign_groups,
    group_split,
    label_from_parts,
    leave_source_out,
)


@pytest.mark.parametrize(
    "parts, expected",
    [
        (("data", "Live"), ("real", "none")),
        (("GENUINE",), ("real", "none")),
        (("x", "bonafide", "session1"), ("real", "none")),
        (("FAKE",), ("spoof", "unknown")),
        (("set", "Imposter", "replay"), ("spoof", "replay")),
        (("spoof", "print", "session2"), ("spoof", "print")),
        (("a", "b", "c", "attack", "mask"), ("spoof", "mask")),
        (("real", "spoof"), ("spoof", "unknown")),  # the deepest synonym wins
        (("reality", "fakes"), (None, "unknown")),  # whole folder names only, no substrings
        ((), (None, "unknown")),
    ],
)
def test_label_from_parts(parts: tuple[str, ...], expected: tuple[str | None, str]) -> None:
    assert label_from_parts(parts) == expected


def _touch(root: Path, *rels: str) -> list[Path]:
    paths = []
    for rel in rels:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        paths.append(path)
    return paths


def test_groups_from_index_csv_by_path_then_by_name(tmp_path: Path) -> None:
    files = _touch(tmp_path, "real/a.jpg", "spoof/a.jpg", "real/b.jpg", "real/other.jpg")
    (tmp_path / "index.csv").write_text(
        "file,label,subject\nreal/a.jpg,real,0001\nspoof/a.jpg,spoof,0002\nelsewhere/b.jpg,real,0003\n"
    )
    groups = assign_groups("nuaa", tmp_path, files)
    assert groups[files[0]] == "nuaa:0001"
    assert groups[files[1]] == "nuaa:0002"  # same name, different folder: matched by path
    assert groups[files[2]] == "nuaa:0003"  # matched by the (unique) file name
    assert groups[files[3]] == "nuaa:all"


def test_group_column_wins_over_subject(tmp_path: Path) -> None:
    files = _touch(tmp_path, "real/a.jpg")
    (tmp_path / "index.csv").write_text("file,subject,group\nreal/a.jpg,7,client007\n")
    assert assign_groups("ra", tmp_path, files)[files[0]] == "ra:client007"


def test_groups_from_timestamps_videos_and_camera_names(tmp_path: Path) -> None:
    files = _touch(
        tmp_path,
        "real/_16823884301391895_2_detect.jpg",  # t
        "real/_1682388470123_1_detect.jpg",  # t + 40 s: same burst
        "real/_1682388600999_detect.jpg",  # + 130 s: a new burst
        "spoof/IMG_0700_12_detect.jpg",
        "spoof/IMG_0700_958_detect.jpg",  # same clip
        "spoof/IMG_0356_detect.jpg",
        "spoof/IMG_0359_detect.jpg",  # same block of ten shots
        "spoof/IMG_0361_detect.jpg",
        "videos/real/clip.mp4",
        "real/0.png",
        "real/frame_00042.jpg",  # not a camera-roll name: no shot blocks
    )
    g = assign_groups("src", tmp_path, files)
    assert g[files[0]] == g[files[1]] != g[files[2]]
    assert g[files[0]].startswith("src:t")
    assert g[files[3]] == g[files[4]] == "src:IMG_0700"
    assert g[files[5]] == g[files[6]] != g[files[7]]
    assert g[files[8]] == "src:videos/real/clip.mp4"
    assert g[files[9]] == g[files[10]] == "src:all"


def _samples() -> list[Sample]:
    """Source "mixed": 20 groups with both classes; "apart": 12 real-only and 12 spoof-only groups;
    three one-group sources like selfrec_*."""
    out = []
    for g in range(20):
        out += [Sample(Path(f"m{g}_{i}"), i % 2, "print", "mixed", f"mixed:{g}") for i in range(6 + g % 3)]
    for g in range(24):
        label = g % 2
        out += [Sample(Path(f"a{g}_{i}"), label, "replay", "apart", f"apart:{g}") for i in range(5)]
    for name in ("selfrec_a", "selfrec_b", "selfrec_c"):
        out += [Sample(Path(f"{name}_{i}"), i % 2, "replay", name, f"{name}:all") for i in range(30)]
    return out


def _sides_of_groups(split: Split) -> dict[str, set[str]]:
    return {side: {s.group for s in getattr(split, side)} for side in ("train", "val", "test")}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_group_split_is_disjoint_stratified_and_complete(seed: int) -> None:
    samples = _samples()
    split = group_split(samples, 0.15, 0.15, seed)
    sides = _sides_of_groups(split)
    assert not (sides["train"] & sides["val"] or sides["train"] & sides["test"] or sides["val"] & sides["test"])
    assert sorted(map(str, (s.path for side in ("train", "val", "test") for s in getattr(split, side)))) == sorted(
        str(s.path) for s in samples
    )
    for side in ("val", "test"):
        for source in ("mixed", "apart"):
            labels = {s.label for s in getattr(split, side) if s.source == source}
            assert labels == {0, 1}, (side, source)
    for name in ("selfrec_a", "selfrec_b", "selfrec_c"):
        assert sum(f"{name}:all" in groups for groups in sides.values()) == 1
    assert split.groups == {side: sorted(groups) for side, groups in sides.items()}
    assert len(split.train) > len(split.val) and len(split.train) > len(split.test)


def test_group_split_is_deterministic_per_seed() -> None:
    samples = _samples()
    assert group_split(samples, seed=5).groups == group_split(samples, seed=5).groups
    assert any(group_split(samples, seed=0).groups != group_split(samples, seed=s).groups for s in range(1, 6))


def test_single_group_sources_reach_val_or_test_for_some_seed() -> None:
    samples = _samples()
    held = {g for seed in range(5) for side in ("val", "test") for g in group_split(samples, seed=seed).groups[side]}
    assert any(g.startswith("selfrec_") for g in held)


def test_leave_source_out() -> None:
    samples = _samples()
    split = leave_source_out(samples, "apart", val_fraction=0.2, seed=0)
    assert {s.source for s in split.test} == {"apart"}
    assert len(split.test) == sum(s.source == "apart" for s in samples)
    assert all(s.source != "apart" for s in split.train + split.val)
    sides = _sides_of_groups(split)
    assert not (sides["train"] & sides["val"]) and {s.label for s in split.val if s.source == "mixed"} == {0, 1}
    with pytest.raises(ValueError):
        leave_source_out(samples, "nope")


def test_disjointness_check_catches_a_shared_group_even_under_python_O() -> None:
    a, b = Sample(Path("a"), 1, "none", "s", "s:1"), Sample(Path("b"), 0, "x", "s", "s:1")
    with pytest.raises(SplitLeak, match="two sides"):  # an exception, not an assert that -O would remove
        assert_disjoint(Split([a], [b], [], {"train": ["s:1"], "val": ["s:1"], "test": []}))
    with pytest.raises(SplitLeak, match="outside its group"):
        assert_disjoint(Split([a], [], [], {"train": ["s:2"], "val": [], "test": []}))


def test_bad_fractions_raise() -> None:
    with pytest.raises(ValueError):
        group_split(_samples(), 0.6, 0.5)
