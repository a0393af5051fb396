"""Where a tune study lives when machines share it: an Optuna RDB storage (PostgreSQL, MySQL,
SQLite) named by --storage. Opening it (the driver named when missing, workers that create
the schema at once retried), the study's identity kept in the storage and checked by every
worker that joins, the list of studies on a server, passwords kept out of files and output.
"""

from __future__ import annotations

import random
import time
import warnings
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tfvision_cli.errors import UsageError

# What tfvision keeps in the Optuna study (user attribute) to tell one experiment from another
IDENTITY = "tfvision_study"
# Per URL scheme: the driver SQLAlchemy imports, and how to install it
DRIVERS = {
    "postgresql": ("psycopg", "pip install -e '.[postgres]' (psycopg 3)"),
    "mysql": ("pymysql", "pip install PyMySQL (and use mysql+pymysql://)"),
}
SCHEMA_TRIES = 8
# A running trial beats every HEARTBEAT_SECONDS; one silent for GRACE_SECONDS (its machine died,
# or was cut off) is failed by the next worker that starts a trial, and retried once with the
# same parameters (Optuna's own heartbeat). On the dead worker's own machine, recover() in
# tune.py does it at once by its process id.
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120


def without_password(url: str | None) -> str | None:
    """A storage URL with its password taken out (postgresql://me:secret@db/x ->
    postgresql://me@db/x): what tune.yaml keeps and messages show. PostgreSQL's driver reads
    the password from PGPASSWORD (or ~/.pgpass) instead."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=user + host))


def _scheme(url: str) -> str:
    return urlsplit(url).scheme.split("+")[0]


def missing_driver(url: str) -> str | None:
    """The install command when the storage's database driver is not installed."""
    import importlib.util

    scheme = _scheme(url)
    if scheme not in DRIVERS:
        return None
    module, install = DRIVERS[scheme]
    if "+" in urlsplit(url).scheme:  # the user chose the driver (postgresql+psycopg2://)
        module = urlsplit(url).scheme.split("+")[1]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else install


def open_storage(url: str):
    """Optuna's RDBStorage for url. Its first use creates Optuna's tables: workers started
    together on a fresh database race to create them, and all but one get a unique-violation
    or already-exists error; those retry (with jitter) until the schema is there."""
    import optuna
    import sqlalchemy.exc

    # the heartbeat's arguments are marked experimental (since Optuna 2.8): not the user's news
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    install = missing_driver(url)
    if install:
        raise UsageError(
            f"--storage {without_password(url)} needs a database driver that is not installed",
            hint=install,
        )
    for attempt in range(SCHEMA_TRIES):
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs={"pool_pre_ping": True},
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=1
                ),
            )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as e:
            if attempt == SCHEMA_TRIES - 1 or not _schema_race(e):
                raise
            time.sleep(0.2 + random.random() * (attempt + 1) * 0.3)  # noqa: S311 (jitter)
    raise AssertionError("unreachable")


def _schema_race(error: Exception) -> bool:
    text = str(error).lower()
    return any(k in text for k in ("unique", "duplicate", "already exists"))


def check_storage(url: str) -> None:
    """Open a storage URL once, so that a wrong one is a usage error (exit 2) before a study
    folder is made for it."""
    try:
        open_storage(url)
    except UsageError:
        raise
    except Exception as e:  # SQLAlchemy's and the drivers' many exception types
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"cannot open --storage {without_password(url)}: {reason[:300]}") from None


def check_joined(optuna_study, name: str, mine: dict, wait: float = 10.0) -> None:
    """Record the study's identity (what makes it the same experiment: dataset, model, metric,
    sampler, space) when this worker created it; compare it when it joined one that exists,
    and refuse a different experiment under the same name, with both listed."""
    deadline = time.monotonic() + wait
    while True:
        theirs = _stored(optuna_study)
        if theirs is not None:
            break
        if not optuna_study.get_trials(deepcopy=False) or time.monotonic() > deadline:
            optuna_study.set_user_attr(IDENTITY, mine)  # created here (or by a peer at once)
            theirs = _stored(optuna_study)
            break
        time.sleep(0.2)  # its creator has trials but is still writing what it is
    differ = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
    if differ:
        listed = "; ".join(
            f"{k}: the study's {a!r}, this command's {b!r}" for k, (a, b) in differ.items()
        )
        raise UsageError(
            f"a study named {name!r} already exists in the storage with another "
            f"experiment ({listed})",
            hint="choose another --study-name, or run the study's own command to join it",
        )


def _stored(optuna_study) -> dict | None:
    found = optuna_study._storage.get_study_user_attrs(optuna_study._study_id).get(IDENTITY)
    return found if isinstance(found, dict) else None


def list_studies(url: str) -> list[dict[str, Any]]:
    """The studies in a storage: name, trials by state, best value, what they search."""
    import optuna
    from optuna.trial import TrialState

    storage = open_storage(url)
    rows = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=True):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
        best = summary.best_trial
        who = summary.user_attrs.get(IDENTITY) or {}
        rows.append(
            {
                "name": summary.study_name,
                "trials": {k: v for k, v in counts.items() if v},
                "best": None if best is None else {"number": best.number, "value": best.value},
                "dataset": who.get("dataset"),
                "model": who.get("model"),
                "metric": who.get("metric"),
                "started": summary.datetime_start.isoformat() if summary.datetime_start else None,
                "hosts": sorted({t.user_attrs.get("host") for t in trials} - {None}),
            }
        )
    return rows
