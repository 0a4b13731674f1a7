"""The shipped profiles are exactly what scripts/derive_profiles.py derives from the real series.

The raw series are not part of the repository. The test finds them through $REALLOCATOR_RAW_DATA,
else in the development layout (a `shared/data` folder beside the checkout, or beside the
repository a clone was made from), and skips with the reason when they are absent, so the test
command passes for someone who cloned only this repository. CI has them: it sets
$REALLOCATOR_REQUIRE_RAW_DATA=1, which turns that skip into a failure.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reallocator.sim import profiles

ROOT = Path(__file__).resolve().parents[2]
RAW_DATA_ENV = "REALLOCATOR_RAW_DATA"
REQUIRE_ENV = "REALLOCATOR_REQUIRE_RAW_DATA"


def _raw_data() -> Path | None:
    """The folder of raw series, or None when it cannot be found."""
    given = os.environ.get(RAW_DATA_ENV)
    if given:
        return Path(given)
    candidates = [ROOT.parent / "shared" / "data"]
    origin = subprocess.run(
        ["git", "-C", str(ROOT), "config", "--get", "remote.origin.url"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if origin and Path(origin).is_dir():
        candidates.append(Path(origin).resolve().parent / "shared" / "data")
    return next((c for c in candidates if c.is_dir()), None)


def raw_data_or_skip() -> Path:
    """The raw series; a skip naming what is missing, or a failure where CI requires them."""
    found = _raw_data()
    if found is not None and found.is_dir():
        return found
    reason = (
        f"raw series not found (set ${RAW_DATA_ENV} to the folder holding nab/ and avito/; "
        "see reallocator/sim/data/SOURCES.md)"
    )
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}, and ${REQUIRE_ENV}=1 requires them")
    pytest.skip(reason)


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
    data = raw_data_or_skip()
    script = ROOT / "scripts" / "derive_profiles.py"
    assert importlib.util.spec_from_file_location("derive_profiles", script) is not None
    subprocess.run(
        [sys.executable, str(script), "--data", str(data), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for path in sorted(tmp_path.iterdir()):
        assert path.read_bytes() == (SHIPPED / path.name).read_bytes(), path.name


def test_missing_raw_series_skip_with_the_reason_or_fail_where_required(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(RAW_DATA_ENV, str(tmp_path / "absent"))
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=RAW_DATA_ENV):
        raw_data_or_skip()
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=REQUIRE_ENV):
        raw_data_or_skip()
