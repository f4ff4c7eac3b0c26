"""``peft-advise trial-worker``: join a trial's learning-rate search from its shared storage.

The study's attributes name the model and the data (and how they were split); the worker reads them,
checks that its rows are the trial's rows (the data digest), and runs waiting jobs until the trial is
finished or none come for a while.
"""

from __future__ import annotations

from typing import Any

from advisor.errors import UserError


def serve_study(storage_url: str, study_name: str | None, device: str, *, idle_s: float, isolate: bool) -> int:
    from advisor.trial import lr_search as search
    from advisor.trial.workers import WorkerSetup, parse_devices, serve

    (device,) = parse_devices(device, None)
    name = study_name or _wait_for_study(storage_url, idle_s)
    study = search.open_study(storage_url, name, create=False)
    setup = WorkerSetup(
        model=study.user_attrs["model"],
        data=_data(study.user_attrs),
        batch_size=int(study.user_attrs["batch_size"]),
        seed=int(study.user_attrs["seed"]),
        train=_trainer(isolate),
    )
    return serve(study, setup, device, idle_s=idle_s)


def _wait_for_study(storage_url: str, idle_s: float) -> str:
    """The storage's one trial study; workers may start before the trial, so wait for it (up to ``idle_s``)."""
    import time

    import optuna

    from advisor.trial.lr_search import storage_for

    storage = storage_for(storage_url)
    deadline = time.monotonic() + idle_s
    while True:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage=storage)]
        trials = [n for n in names if n.startswith("peft-advisor-trial-")]
        if len(trials) > 1:
            raise UserError(
                f"--lr-storage holds {len(trials)} trial studies ({', '.join(trials)}); name one with --study"
            )
        if trials:
            return trials[0]
        if time.monotonic() > deadline:
            raise UserError("--lr-storage holds no trial yet; start `peft-advise trial ... --lr-storage URL` first")
        time.sleep(1.0)


def _data(attrs: dict[str, Any]) -> Any:
    from advisor.trial.data import load_trial_data
    from advisor.trial.results import setup_record
    from advisor.trial.train import TrainBudget

    data = load_trial_data(
        attrs["data"],
        eval_fraction=float(attrs["eval_fraction"]),
        seed=int(attrs["seed"]),
        text_column=attrs.get("text_column"),
        label_column=attrs.get("label_column"),
    )
    digest = setup_record(attrs["model"], data, TrainBudget())["data_digest"]
    if digest != attrs.get("data_digest"):
        raise UserError(
            f"the data at {attrs['data']} on this machine is not the trial's (digest {digest} vs "
            f"{attrs.get('data_digest')}); give this worker the same file"
        )
    return data


def _trainer(isolate: bool) -> Any:
    if isolate:
        from advisor.trial.isolate import train_in_subprocess, warm_up

        warm_up()
        return train_in_subprocess
    from advisor.trial.train import train_candidate

    return train_candidate
