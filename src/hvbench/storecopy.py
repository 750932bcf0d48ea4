"""``hvbench store copy``: move a store's history into another (e.g. a personal SQLite
file into a team's PostgreSQL database).

Runs are copied whole, each in one transaction (its platforms, trials and samples,
with new trial ids); a run the target already has is skipped, so a copy that was
cut short can simply be repeated.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from .store import Store, run_platforms, runs, samples, trials


@dataclass(frozen=True)
class Copied:
    runs: int
    skipped: int
    trials: int
    samples: int


def copy_runs(source: Store, target: Store) -> Copied:
    """Every run of ``source`` that ``target`` does not have yet."""
    with source.connection() as connection:
        run_rows = connection.execute(sa.select(runs).order_by(runs.c.created)).all()
    with target.connection() as connection:
        present = set(connection.execute(sa.select(runs.c.id)).scalars())
    copied = skipped = trial_count = sample_count = 0
    for run in run_rows:
        if run.id in present:
            skipped += 1
            continue
        with source.connection() as connection:
            platforms = connection.execute(sa.select(run_platforms).where(
                run_platforms.c.run_id == run.id)).all()
            trial_rows = connection.execute(sa.select(trials).where(
                trials.c.run_id == run.id).order_by(trials.c.id)).all()
            sample_rows = connection.execute(
                sa.select(samples).join(trials, samples.c.trial_id == trials.c.id)
                .where(trials.c.run_id == run.id).order_by(samples.c.id)).all()
        by_trial: dict[int, list[dict[str, object]]] = {}
        for sample in sample_rows:
            row = sample._asdict()
            trial_id = int(row.pop("trial_id"))
            row.pop("id")
            by_trial.setdefault(trial_id, []).append(row)
        with target.connection(write=True) as connection:
            connection.execute(runs.insert().values(**run._asdict()))
            if platforms:
                connection.execute(run_platforms.insert(), [p._asdict() for p in platforms])
            for trial in trial_rows:
                row = trial._asdict()
                old = int(row.pop("id"))
                key = connection.execute(trials.insert().values(**row)).inserted_primary_key
                assert key is not None
                rows = by_trial.get(old, [])
                if rows:
                    connection.execute(samples.insert(), [{**r, "trial_id": int(key[0])}
                                                          for r in rows])
                sample_count += len(rows)
            trial_count += len(trial_rows)
        copied += 1
    return Copied(copied, skipped, trial_count, sample_count)
