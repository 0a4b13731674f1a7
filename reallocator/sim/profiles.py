"""The real-data profiles the simulator ships (reallocator/sim/data, derived by
scripts/derive_profiles.py from NAB and BAT series; see data/SOURCES.md), read as numpy arrays.

* traffic: 168 hour-of-week weights (Monday 00h first, mean 1) per profile name (single
  regions in a tuning and an evaluation set: REGION_PROFILES);
* cpm: 168 hour-of-week eCPM levels (mean 1) per exchange, with the AR(1) noise around them;
* traffic noise: AR(1) sigma/phi of real demand around its weekly curve;
* burst / shock: multipliers over time (minutes from the event's start); the NYC marathon,
  Thanksgiving, Christmas and New Year windows are the evaluation set's events.

Cached: the files are read once per process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from io import StringIO

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]

REGION_PROFILES = {
    "tuning": ("avito_t1", "avito_t2", "avito_t3", "avito_t4"),
    "evaluation": ("avito_e1", "avito_e2", "avito_e3", "avito_e4"),
}
"""Single regions' curves (traffic_regions.csv), split by scripts/derive_profiles.py before
any tuning: settings are tuned on the tuning set, figures stated on the evaluation set."""
TAXI_EVENTS = ("nyc_marathon", "nyc_thanksgiving", "nyc_christmas", "nyc_newyear")
"""NAB's other labelled NYC taxi windows (shocks_nyc_taxi.csv): evaluation set."""
TRAFFIC_PROFILES = (
    "avito_mean",
    "avito_early",
    "avito_late",
    "nyc_taxi",
    *REGION_PROFILES["tuning"],
    *REGION_PROFILES["evaluation"],
)
CPM_PROFILES = ("exchange-2", "exchange-3", "exchange-4")
EVENT_SHAPES = ("twitter_amzn", "nyc_blizzard", *TAXI_EVENTS)


def _text(name: str) -> str:
    return (resources.files("reallocator.sim") / "data" / name).read_text(encoding="utf-8")


def _csv(name: str) -> pd.DataFrame:
    return pd.read_csv(StringIO(_text(name)))


@dataclass(frozen=True)
class Noise:
    """AR(1) log noise: stationary std `sigma`, lag-1 autocorrelation `phi` at `step_minutes`."""

    sigma: float
    phi: float
    step_minutes: float

    def at_step(self, minutes: float) -> Noise:
        """The same process sampled every `minutes` (phi ** (minutes / step), sigma kept)."""
        return Noise(self.sigma, float(self.phi ** (minutes / self.step_minutes)), minutes)


@cache
def _traffic() -> dict[str, FloatArray]:
    regions = _csv("traffic_regions.csv").drop(columns="set")
    frame = pd.concat([_csv("traffic_hour_of_week.csv"), regions], ignore_index=True)
    frame = frame.sort_values(["profile", "dow", "hour"])
    return {
        str(name): group["weight"].to_numpy(np.float64)
        for name, group in frame.groupby("profile", sort=True)
    }


@cache
def _cpm() -> dict[str, FloatArray]:
    frame = _csv("cpm_hour_of_week.csv").sort_values(["profile", "dow", "hour"])
    return {
        str(name): group["level"].to_numpy(np.float64)
        for name, group in frame.groupby("profile", sort=True)
    }


@cache
def _noise() -> dict[str, dict[str, Noise]]:
    raw = json.loads(_text("noise.json"))
    return {
        kind: {name: Noise(**values) for name, values in table.items()}
        for kind, table in raw.items()
    }


def traffic_weights(name: str) -> FloatArray:
    """168 hour-of-week weights, Monday 00h first, mean 1 (a copy)."""
    table = _traffic()
    if name not in table:
        raise ValueError(f"unknown traffic profile {name!r}; known: {sorted(table)}")
    return table[name].copy()


def cpm_levels(name: str) -> FloatArray:
    """168 hour-of-week eCPM multipliers, Monday 00h first, mean 1 (a copy)."""
    table = _cpm()
    if name not in table:
        raise ValueError(f"unknown CPM profile {name!r}; known: {sorted(table)}")
    return table[name].copy()


def cpm_noise(name: str) -> Noise:
    return _noise()["cpm"][name]


def traffic_noise() -> Noise:
    return _noise()["traffic"]["nyc_taxi"]


@cache
def _event(name: str) -> tuple[FloatArray, FloatArray]:
    files = {"twitter_amzn": "burst_twitter_amzn.csv", "nyc_blizzard": "shock_nyc_blizzard.csv"}
    if name in TAXI_EVENTS:
        frame = _csv("shocks_nyc_taxi.csv")
        frame = frame[frame["event"] == name]
    elif name in files:
        frame = _csv(files[name])
    else:
        raise ValueError(f"unknown event shape {name!r}; known: {sorted(EVENT_SHAPES)}")
    return (
        frame["offset_minutes"].to_numpy(np.float64),
        frame["multiplier"].to_numpy(np.float64),
    )


def event_shape(name: str, offsets_minutes: FloatArray) -> FloatArray:
    """The event's multiplier at each offset (minutes from its start), linearly interpolated;
    1.0 before the event and after its last sample."""
    x, y = _event(name)
    out = np.interp(offsets_minutes, x, y, left=1.0, right=1.0)
    return np.asarray(out, dtype=np.float64)


def event_duration_minutes(name: str) -> float:
    x, _ = _event(name)
    return float(x[-1])
