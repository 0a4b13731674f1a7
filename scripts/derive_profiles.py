"""Re-derive the small traffic and price profiles the simulator ships (reallocator/sim/data).

Reads the real series (NAB and BAT data, MIT licences; see reallocator/sim/data/SOURCES.md) from a
folder given by --data or $REALLOCATOR_RAW_DATA, laid out as `nab/...` and `avito/...`, and
writes a few hundred numbers per profile, so `reallocator.sim` runs for a user who has only the
project. Nothing is tuned to a window of the data: every profile is a plain average or ratio.

    .venv/bin/python scripts/derive_profiles.py --data DIR [--out reallocator/sim/data]

Outputs (all deterministic; re-running reproduces the shipped files byte for byte):

* ``traffic_hour_of_week.csv`` - profile, dow (1 = Monday), hour, weight (mean 1 over the week):
  ``avito_mean`` (mean hour-of-week traffic share over BAT's 114 regions), ``avito_early`` and
  ``avito_late`` (the regions whose weekday peak comes earliest and latest), ``nyc_taxi``
  (median NYC taxi demand per hour of week).
* ``cpm_hour_of_week.csv`` - profile, dow, hour, level: the hour-of-week eCPM level of NAB's three
  ad exchanges (hour-of-day x day-of-week geometric means, mean 1 over the week).
* ``noise.json`` - log-residual standard deviation and lag-1 autocorrelation (AR(1) phi) of
  traffic (NYC taxi, 30 min) and of each exchange's hourly CPM around those profiles.
* ``burst_twitter_amzn.csv`` - offset_minutes, multiplier: the largest burst of AMZN tweet volume
  at 15 minutes, as a multiple of its weekly rolling median (1 h before to 23 h after the peak).
* ``shock_nyc_blizzard.csv`` - offset_minutes, multiplier: NYC taxi demand over the January 2015
  blizzard (NAB's labelled window), as a multiple of the median for that half hour of the week.
* ``traffic_regions.csv`` - profile, set, dow, hour, weight: single BAT regions at fixed ranks of
  their weekday peak, alternately in the tuning set (``avito_t*``) and the evaluation set
  (``avito_e*``).
* ``shocks_nyc_taxi.csv`` - event, offset_minutes, multiplier: NAB's other labelled NYC taxi
  windows (marathon, Thanksgiving, Christmas, New Year), like the blizzard; evaluation set.

The split into a tuning set (the profiles above but the last two files' evaluation members)
and an evaluation set is made here, by rank, before anything is tuned on the simulator.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RAW_DATA_ENV = "REALLOCATOR_RAW_DATA"
DEFAULT_OUT = ROOT / "reallocator" / "sim" / "data"


def _how(ts: pd.Series) -> pd.Series:
    """Hour of week, Monday 00h = 0."""
    return ts.dt.day_of_week * 24 + ts.dt.hour


def _weights_frame(name: str, weights: np.ndarray) -> pd.DataFrame:
    w = weights / weights.mean()
    return pd.DataFrame(
        {
            "profile": name,
            "dow": np.repeat(np.arange(1, 8), 24),
            "hour": np.tile(np.arange(24), 7),
            "weight": np.round(w, 6),
        }
    )


def traffic_profiles(data: Path) -> tuple[pd.DataFrame, dict[str, float]]:
    avito = pd.read_csv(data / "avito" / "traffic_share.csv")
    avito = avito.sort_values(["region_id", "dow", "hour"])
    shares = avito.pivot_table(index="region_id", columns=["dow", "hour"], values="traffic_share")
    matrix = shares.to_numpy(np.float64)  # (regions, 168), Monday 00h first (dow 1 = Monday)
    weekday = matrix.reshape(-1, 7, 24)[:, :5, :].mean(axis=1)  # mean weekday curve
    centre = (weekday * np.arange(24)).sum(axis=1) / weekday.sum(axis=1)  # daily centre of mass
    early, late = int(np.argmin(centre)), int(np.argmax(centre))
    frames = [
        _weights_frame("avito_mean", matrix.mean(axis=0)),
        _weights_frame("avito_early", matrix[early]),
        _weights_frame("avito_late", matrix[late]),
    ]

    taxi = pd.read_csv(data / "nab" / "nyc_taxi.csv", parse_dates=["timestamp"])
    hourly = taxi.set_index("timestamp")["value"].resample("1h").sum()
    hours = hourly.index.to_series()
    median = hourly.groupby(_how(hours).to_numpy()).median().reindex(range(168))
    frames.append(_weights_frame("nyc_taxi", median.to_numpy(np.float64)))

    # Traffic noise: log residual around the half-hour-of-week median, with its AR(1) phi,
    # outside NAB's labelled anomaly windows (the shocks are a profile of their own).
    half = taxi["timestamp"].dt.day_of_week * 48 + taxi["timestamp"].dt.hour * 2
    half = half + taxi["timestamp"].dt.minute // 30
    logv = np.log(taxi["value"].clip(lower=1).to_numpy(np.float64))
    base = pd.Series(logv).groupby(half.to_numpy()).median()
    resid = logv - base.reindex(half.to_numpy()).to_numpy()
    windows = json.loads((data / "nab" / "combined_windows.json").read_text())
    calm = np.ones(len(taxi), dtype=bool)
    for a, b in windows["realKnownCause/nyc_taxi.csv"]:
        calm &= ~((taxi["timestamp"] >= pd.Timestamp(a)) & (taxi["timestamp"] <= pd.Timestamp(b)))
    resid = np.where(calm, resid - resid[calm].mean(), 0.0)
    resid = resid[calm]
    noise = {
        "sigma": round(float(np.std(resid)), 4),
        "phi": round(float(pd.Series(resid).autocorr(lag=1)), 4),
        "step_minutes": 30.0,
    }
    return pd.concat(frames, ignore_index=True), noise


def cpm_profiles(data: Path) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    frames, noise = [], {}
    for exchange in (2, 3, 4):
        name = f"exchange-{exchange}"
        cpm = pd.read_csv(data / "nab" / f"{name}_cpm_results.csv", parse_dates=["timestamp"])
        logv = np.log(cpm["value"].clip(lower=1e-3).to_numpy(np.float64))
        ts = cpm["timestamp"]
        hod = pd.Series(logv).groupby(ts.dt.hour.to_numpy()).mean().reindex(range(24))
        dow = pd.Series(logv).groupby(ts.dt.day_of_week.to_numpy()).mean().reindex(range(7))
        level = (dow.to_numpy()[:, None] - dow.mean()) + hod.to_numpy()[None, :]
        weights = np.exp(level.ravel())
        frame = _weights_frame(name, weights).rename(columns={"weight": "level"})
        frames.append(frame)
        fitted = np.log(weights / weights.mean())[_how(ts).to_numpy()]
        resid = logv - fitted
        resid = resid - resid.mean()
        noise[name] = {
            "sigma": round(float(np.std(resid)), 4),
            "phi": round(float(pd.Series(resid).autocorr(lag=1)), 4),
            "step_minutes": 60.0,
        }
    return pd.concat(frames, ignore_index=True), noise


def burst_profile(data: Path) -> pd.DataFrame:
    tweets = pd.read_csv(data / "nab" / "Twitter_volume_AMZN.csv", parse_dates=["timestamp"])
    q = tweets.set_index("timestamp")["value"].resample("15min").sum()
    baseline = q.rolling(96 * 7, center=True, min_periods=96).median()
    ratio = (q / baseline).dropna()
    peak = ratio.idxmax()
    window = ratio[peak - pd.Timedelta(hours=1) : peak + pd.Timedelta(hours=23)]
    window = window.iloc[:96]
    offsets = ((window.index - window.index[0]).total_seconds() // 60).astype(int)
    return pd.DataFrame({"offset_minutes": offsets, "multiplier": np.round(window.to_numpy(), 4)})


def blizzard_shock(data: Path) -> pd.DataFrame:
    taxi = pd.read_csv(data / "nab" / "nyc_taxi.csv", parse_dates=["timestamp"])
    windows = json.loads((data / "nab" / "combined_windows.json").read_text())
    start, end = (pd.Timestamp(s) for s in windows["realKnownCause/nyc_taxi.csv"][-1])
    ts = taxi["timestamp"]
    half = ts.dt.day_of_week * 48 + ts.dt.hour * 2 + ts.dt.minute // 30
    median = taxi["value"].groupby(half.to_numpy()).median()
    ratio = taxi["value"].to_numpy(np.float64) / median.reindex(half.to_numpy()).to_numpy()
    keep = ((ts >= start.floor("1D")) & (ts < end.ceil("1D"))).to_numpy()
    stamps = ts[keep]
    offsets = ((stamps - stamps.iloc[0]).dt.total_seconds() // 60).astype(int)
    return pd.DataFrame(
        {"offset_minutes": offsets.to_numpy(), "multiplier": np.round(ratio[keep], 4)}
    )


REGION_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
"""Regions picked by the rank of their weekday peak (centre of mass of the mean weekday curve),
at these quantiles; alternately into the tuning set and the evaluation set, the split fixed
here before any tuning (the evaluation regions never shaped a setting)."""

TAXI_EVENTS = ("nyc_marathon", "nyc_thanksgiving", "nyc_christmas", "nyc_newyear")
"""NAB's first four labelled NYC taxi windows in time order (the fifth is the blizzard,
shipped as shock_nyc_blizzard.csv): the 2014 NYC marathon weekend, Thanksgiving, Christmas and
New Year. All four belong to the evaluation set (the blizzard and the AMZN burst to tuning)."""


def region_profiles(data: Path) -> pd.DataFrame:
    """Hour-of-week weights of single regions (``avito_t1``.. tuning, ``avito_e1``.. evaluation)
    with a ``set`` column: profile, set, dow, hour, weight."""
    avito = pd.read_csv(data / "avito" / "traffic_share.csv")
    avito = avito.sort_values(["region_id", "dow", "hour"])
    shares = avito.pivot_table(index="region_id", columns=["dow", "hour"], values="traffic_share")
    matrix = shares.to_numpy(np.float64)
    # Some regions share one identical curve: keep each curve once, or a tuning region and an
    # evaluation region could be the same data.
    _, first = np.unique(np.round(matrix, 9), axis=0, return_index=True)
    matrix = matrix[np.sort(first)]
    weekday = matrix.reshape(-1, 7, 24)[:, :5, :].mean(axis=1)
    centre = (weekday * np.arange(24)).sum(axis=1) / weekday.sum(axis=1)
    order = np.argsort(centre, kind="stable")
    frames = []
    for k, q in enumerate(REGION_QUANTILES):
        region = int(order[round(q * (len(order) - 1))])
        kind, number = ("tuning", "t") if k % 2 == 0 else ("evaluation", "e")
        frame = _weights_frame(f"avito_{number}{k // 2 + 1}", matrix[region])
        frame.insert(1, "set", kind)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def taxi_events(data: Path) -> pd.DataFrame:
    """NYC taxi demand over each labelled window but the last, whole days, as a multiple of the
    median for that half hour of the week: event, offset_minutes, multiplier."""
    taxi = pd.read_csv(data / "nab" / "nyc_taxi.csv", parse_dates=["timestamp"])
    windows = json.loads((data / "nab" / "combined_windows.json").read_text())
    ts = taxi["timestamp"]
    half = ts.dt.day_of_week * 48 + ts.dt.hour * 2 + ts.dt.minute // 30
    median = taxi["value"].groupby(half.to_numpy()).median()
    ratio = taxi["value"].to_numpy(np.float64) / median.reindex(half.to_numpy()).to_numpy()
    frames = []
    for name, (a, b) in zip(TAXI_EVENTS, windows["realKnownCause/nyc_taxi.csv"], strict=False):
        start, end = pd.Timestamp(a), pd.Timestamp(b)
        keep = ((ts >= start.floor("1D")) & (ts < end.ceil("1D"))).to_numpy()
        stamps = ts[keep]
        offsets = ((stamps - stamps.iloc[0]).dt.total_seconds() // 60).astype(int)
        frames.append(
            pd.DataFrame(
                {
                    "event": name,
                    "offset_minutes": offsets.to_numpy(),
                    "multiplier": np.round(ratio[keep], 4),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=os.environ.get(RAW_DATA_ENV) or None,
        help=f"folder of the raw series (default ${RAW_DATA_ENV})",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    if args.data is None:
        parser.error(f"the raw series are needed: pass --data DIR or set ${RAW_DATA_ENV}")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    traffic, traffic_noise = traffic_profiles(args.data)
    traffic.to_csv(out / "traffic_hour_of_week.csv", index=False)
    cpm, cpm_noise = cpm_profiles(args.data)
    cpm.to_csv(out / "cpm_hour_of_week.csv", index=False)
    noise = {"traffic": {"nyc_taxi": traffic_noise}, "cpm": cpm_noise}
    (out / "noise.json").write_text(json.dumps(noise, indent=2, sort_keys=True) + "\n")
    burst_profile(args.data).to_csv(out / "burst_twitter_amzn.csv", index=False)
    blizzard_shock(args.data).to_csv(out / "shock_nyc_blizzard.csv", index=False)
    region_profiles(args.data).to_csv(out / "traffic_regions.csv", index=False)
    taxi_events(args.data).to_csv(out / "shocks_nyc_taxi.csv", index=False)
    for path in sorted(out.iterdir()):
        print(f"{path.name:32s} {path.stat().st_size:8d} bytes")


if __name__ == "__main__":
    main()
