"""The shipped profiles are exactly what scripts/derive_profiles.py derives from the real series
(from ../shared/data, beside the project on every developer machine and in CI)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from reallocator.sim import profiles

ROOT = Path(__file__).resolve().parents[2]


def _shared_data() -> Path:
    """../shared/data beside the project; for a clone made elsewhere (a scratch directory), the
    one beside the repository it was cloned from."""
    here = ROOT / ".." / "shared" / "data"
    if here.exists():
        return here
    origin = subprocess.run(
        ["git", "-C", str(ROOT), "config", "--get", "remote.origin.url"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if origin and Path(origin).is_dir():
        return Path(origin).resolve() / ".." / "shared" / "data"
    return here


DATA = _shared_data()
SHIPPED = ROOT / "reallocator" / "sim" / "data"


def test_profiles_are_normalised() -> None:
    for name in profiles.TRAFFIC_PROFILES:
        weights = profiles.traffic_weights(name)
        assert weights.shape == (168,) and abs(weights.mean() - 1.0) < 1e-4
        assert (weights > 0).all()
    for name in profiles.CPM_PROFILES:
        assert abs(profiles.cpm_levels(name).mean() - 1.0) < 1e-4
        noise = profiles.cpm_noise(name)
        assert 0 < noise.sigma < 1 and -1 < noise.phi < 1
    assert profiles.event_shape("twitter_amzn", profiles.np.array([-30.0, 1e9])).tolist() == [
        1.0,
        1.0,
    ]
    assert (SHIPPED / "SOURCES.md").read_text().count("MIT") >= 2


def test_shipped_profiles_rederive_byte_for_byte(tmp_path: Path) -> None:
    assert DATA.exists(), f"{DATA}: the raw series (../shared/data beside the project) are missing"
    script = ROOT / "scripts" / "derive_profiles.py"
    assert importlib.util.spec_from_file_location("derive_profiles", script) is not None
    subprocess.run(
        [sys.executable, str(script), "--data", str(DATA), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for path in sorted(tmp_path.iterdir()):
        assert path.read_bytes() == (SHIPPED / path.name).read_bytes(), path.name
