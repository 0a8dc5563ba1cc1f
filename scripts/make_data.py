"""Make the example recipes' sample data, deterministically, with a real signal in each label.

    python scripts/make_data.py [--out data] [--customers 5000] [--accounts 5000] [--seed 7]
                                [--today YYYY-MM-DD]

Times are anchored to today (UTC, or ``--today``), so the newest values are inside each view's
``ttl_s`` and served online; older values read as missing, as they would in production. The same
seed and day give the same bytes.

churn: monthly customer snapshots (tenure, charges, contract, support calls...) and churn labels
observed after the last snapshot; some snapshots arrive late (created after their event time).
fraud: daily account activity snapshots and fraud labels; taken-over accounts (about 6%) show
bursts of transactions, larger amounts, foreign use and chargebacks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

#: Days before today that each domain's day 0 lies: churn's last monthly snapshot is then 20 days
#: old (ttl 90 days), fraud's last daily snapshot one day old (ttl 2 days).
CHURN_DAYS_BACK, FRAUD_DAYS_BACK = 80, 4


def today(text: str | None = None) -> pd.Timestamp:
    """Midnight UTC of ``text`` (YYYY-MM-DD) or of today."""
    day = pd.Timestamp(text, tz="UTC") if text else pd.Timestamp.now(tz="UTC")
    return day.floor("D")


def churn(n: int, rng: np.random.Generator,
          t0: pd.Timestamp | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three monthly snapshots of ``n`` customers from day ``t0``, and churn labels at day 75."""
    T0 = t0 if t0 is not None else today() - pd.Timedelta(days=CHURN_DAYS_BACK)
    ids = np.array([f"C{i:06d}" for i in range(n)])
    tenure0 = rng.integers(0, 60, n)
    contract = rng.choice([1, 12, 24], n, p=[0.5, 0.3, 0.2])
    charges = np.round(rng.uniform(20, 120, n), 2)
    rows = []
    for month in range(3):
        ts = T0 + pd.Timedelta(days=30 * month)
        late = rng.random(n) < 0.05
        created = ts + pd.to_timedelta(np.where(late, rng.integers(2, 20, n), 0), unit="D")
        calls = rng.poisson(1 + 2 * (contract == 1), n)
        rows.append(pd.DataFrame({
            "customer_id": ids,
            "event_timestamp": ts,
            "created": created,
            "tenure_months": (tenure0 + month).astype("int64"),
            "monthly_charges": charges + month * rng.normal(0, 1, n).round(2),
            "contract_months": contract.astype("int64"),
            "support_calls": calls.astype("int64"),
            "payment_delay_days": rng.exponential(3, n).round(1),
        }))
    features = pd.concat(rows, ignore_index=True)
    last = rows[-1]
    logit = (-1.0 - 0.05 * last["tenure_months"] + 0.02 * last["monthly_charges"]
             + 0.5 * last["support_calls"] - 0.06 * last["contract_months"]
             + 0.08 * last["payment_delay_days"])
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")
    labels = pd.DataFrame({
        "customer_id": ids,
        "event_timestamp": T0 + pd.Timedelta(days=75) + pd.to_timedelta(rng.integers(0, 86400, n), unit="s"),
        "churned": churned,
    })
    return features, labels


def fraud(n: int, rng: np.random.Generator,
          t0: pd.Timestamp | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Daily activity of ``n`` accounts over 4 days from ``t0``, and one fraud label each (day 3.5).

    A hidden share of accounts (about 6%, more among young ones) is taken over. From the takeover's
    first day (day 1-3) their activity changes: bursts of transactions, larger amounts, more foreign
    use; they also carry more recent chargebacks. Some takeovers stay quiet (no pattern) and some
    legitimate accounts travel (high foreign ratio), so the label is learnable but not trivial.
    """
    T0 = t0 if t0 is not None else today() - pd.Timedelta(days=FRAUD_DAYS_BACK)
    ids = np.arange(100_000, 100_000 + n, dtype="int64")
    age = rng.integers(1, 2000, n)
    logit = -2.1 - 0.0008 * age + 1.0 * (age < 90)
    taken = rng.random(n) < 1 / (1 + np.exp(-logit))
    onset = rng.integers(1, 4, n)                       # first day of the takeover
    shows = taken & (rng.random(n) >= 0.08)             # 8% of takeovers stay quiet
    traveller = ~taken & (rng.random(n) < 0.05)         # legitimate, but often abroad
    txn_rate = rng.gamma(3, 1.0, n)                     # each account's usual daily transactions
    amount = rng.lognormal(3.5, 0.7, n)                 # and usual amount
    foreign = np.where(traveller, rng.beta(4, 4, n), rng.beta(1, 10, n))
    chargebacks = rng.poisson(np.where(shows, 1.0, 0.05), n)
    rows = []
    for day in range(4):
        ts = T0 + pd.Timedelta(days=day)
        on = shows & (day >= onset)
        rows.append(pd.DataFrame({
            "account_id": ids,
            "event_timestamp": ts,
            "account_age_days": (age + day).astype("int64"),
            "txn_count_24h": rng.poisson(txn_rate * np.where(on, 3.0, 1.0)).astype("int64"),
            "avg_amount_7d": (amount * np.where(on, 2.5, 1.0) * rng.lognormal(0, 0.1, n)).round(2),
            "foreign_ratio": np.clip(foreign + np.where(on, 0.7 * rng.beta(2, 3, n), 0.0)
                                     + rng.normal(0, 0.01, n), 0, 1).round(3),
            "chargebacks_90d": chargebacks.astype("int64"),
        }))
    features = pd.concat(rows, ignore_index=True)
    labels = pd.DataFrame({
        "account_id": ids,
        "event_timestamp": T0 + pd.Timedelta(days=3, hours=12),
        "is_fraud": taken.astype("int64"),
    })
    return features, labels


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="data")
    p.add_argument("--customers", type=int, default=5000)
    p.add_argument("--accounts", type=int, default=5000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--today", default=None, help="the day the data ends near (default: today, UTC)")
    args = p.parse_args(argv)
    out, day = Path(args.out), today(args.today)
    for name, make, n, back in (("churn", churn, args.customers, CHURN_DAYS_BACK),
                                ("fraud", fraud, args.accounts, FRAUD_DAYS_BACK)):
        feats, labels = make(n, np.random.default_rng(args.seed), day - pd.Timedelta(days=back))
        (out / name).mkdir(parents=True, exist_ok=True)
        feats.to_parquet(out / name / "features.parquet", index=False)
        labels.to_parquet(out / name / "labels.parquet", index=False)
        # The entities to score with `loom batch` (the recipes' batch.input).
        labels.iloc[:, :1].to_parquet(out / name / "to_score.parquet", index=False)
        print(f"{name}: {len(feats)} feature rows, {len(labels)} labels "
              f"({labels.iloc[:, -1].mean():.1%} positive) -> {out / name}")


if __name__ == "__main__":
    main()
