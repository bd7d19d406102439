"""A real ML pipeline: extract -> clean -> features -> train -> evaluate -> deploy or notify.

It learns to read hand-written digits (the data set ships inside scikit-learn, so nothing is
downloaded): a stratified train/test split, a scaler fitted on the training part only, a linear
classifier trained epoch by epoch, and accuracy on the held-out part. A branch task then decides:
when the accuracy passes ``threshold`` it follows ``deploy``, which writes the model to a
versioned folder, and ``notify`` is skipped; otherwise it follows ``notify``, which says why the
model was not deployed, and ``deploy`` is skipped. The run succeeds either way.

    rota run examples/ml_pipeline.py -p threshold=0.9 -p epochs=10
    rota run examples/ml_pipeline.py -p fail_at_epoch=5   # the retry resumes at epoch 6

Every step but the branch is cached by content: run it twice and the second run executes nothing
but the (cheap) decision; edit a step (or a helper it calls, like ``prediction_metrics``) and only
that step and what its new output feeds run again. Set ``ROTA_EXAMPLE_LEDGER`` to a file to have
each step that really runs append its name to it.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from rota import flow, task


def note(step: str) -> None:
    """Append *step* to the effect ledger named by ROTA_EXAMPLE_LEDGER, if set."""
    ledger = os.environ.get("ROTA_EXAMPLE_LEDGER")
    if ledger:
        with open(ledger, "a", encoding="utf-8") as fh:
            fh.write(step + "\n")


def private_folder(path: Path) -> Path:
    """Create *path* and its missing parents readable by their owner only (0700), like the rest of
    ROTA_HOME: a model can hold what it learnt from private data."""
    for folder in reversed([p for p in (path, *path.parents) if not p.is_dir()]):
        folder.mkdir(mode=0o700, exist_ok=True)
        folder.chmod(0o700)  # mkdir's mode passes through the umask
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write *data* to *path*, a file readable by its owner only (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fd, 0o600)
        fh.write(data)


def prediction_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """Accuracy and macro-averaged recall of predictions, rounded to 4 digits."""
    accuracy = float(np.mean(y_true == y_pred))
    recalls = [float(np.mean(y_pred[y_true == c] == c)) for c in np.unique(y_true)]
    return {"accuracy": round(accuracy, 4), "macro_recall": round(float(np.mean(recalls)), 4)}


@task(tags=["data"], cache=True)
def extract() -> dict[str, Any]:
    """Load the 8x8 digit images (1,797 samples, 64 pixel features, 10 classes)."""
    note("extract")
    from sklearn.datasets import load_digits

    digits = load_digits()
    print(f"extracted {digits.data.shape[0]} images of {digits.data.shape[1]} pixels")
    return {"X": digits.data, "y": digits.target}


@task(tags=["data"], cache=True)
def clean(raw: dict[str, Any]) -> dict[str, Any]:
    """Drop duplicate images and pixels that never vary; scale pixel values to [0, 1]."""
    note("clean")
    X = np.asarray(raw["X"], dtype=np.float64)
    y = np.asarray(raw["y"])
    _, first = np.unique(X, axis=0, return_index=True)
    keep_rows = np.sort(first)
    X, y = X[keep_rows], y[keep_rows]
    keep_cols = X.std(axis=0) > 0
    X = X[:, keep_cols] / 16.0
    print(f"kept {len(keep_rows)} rows and {int(keep_cols.sum())} of {keep_cols.size} pixels")
    return {"X": X, "y": y}


@task(tags=["features"], cache=True)
def features(data: dict[str, Any], test_size: float, seed: int) -> dict[str, Any]:
    """Stratified train/test split, then a scaler fitted on the training part only."""
    note("features")
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X_train, X_test, y_train, y_test = train_test_split(
        data["X"], data["y"], test_size=test_size, random_state=seed, stratify=data["y"]
    )
    scaler = StandardScaler().fit(X_train)
    return {
        "X_train": scaler.transform(X_train),
        "X_test": scaler.transform(X_test),
        "y_train": y_train,
        "y_test": y_test,
        "scaler": scaler,
    }


# ctx is read for its checkpoint and try number only, not the run's parameters or dates
@task(tags=["ml"], retries=1, cache=True, cache_on=())
def train(feats: dict[str, Any], epochs: int, seed: int, fail_at_epoch: int, ctx: Any) -> Any:
    """A logistic-loss linear classifier trained one epoch (one shuffled pass) at a time.

    Each epoch is checkpointed, so a retry (or a resume) goes on from the last finished epoch.
    ``fail_at_epoch`` injects a failure right after that epoch in the first attempt.
    """
    from sklearn.linear_model import SGDClassifier

    note("train")
    state = ctx.checkpoint.load()
    if state is None:
        model = SGDClassifier(loss="log_loss", alpha=1e-4, random_state=seed)
        rng = np.random.default_rng(seed)
        done = 0
    else:
        model, done = state["model"], state["epoch"]
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng"]
        print(f"resuming from the checkpoint of epoch {done}")
    classes = np.unique(feats["y_train"])
    for epoch in range(done + 1, epochs + 1):
        order = rng.permutation(len(feats["y_train"]))
        model.partial_fit(feats["X_train"][order], feats["y_train"][order], classes=classes)
        score = model.score(feats["X_train"], feats["y_train"])
        print(f"epoch {epoch}/{epochs}: training accuracy {score:.4f}")
        ctx.checkpoint.save({"model": model, "epoch": epoch, "rng": rng.bit_generator.state})
        if epoch == fail_at_epoch and ctx.try_number == 1:
            raise RuntimeError(f"injected failure after epoch {epoch}")
    return model


@task(tags=["ml"], cache=True)
def evaluate(model: Any, feats: dict[str, Any]) -> dict[str, float]:
    """Accuracy and macro recall on the held-out test part."""
    note("evaluate")
    metrics = prediction_metrics(feats["y_test"], model.predict(feats["X_test"]))
    metrics["n_test"] = float(len(feats["y_test"]))
    print(f"held-out accuracy {metrics['accuracy']:.4f} on {len(feats['y_test'])} images")
    return metrics


@task.branch
def deploy_or_notify(metrics: dict[str, float], threshold: float) -> str:
    """Follow ``deploy`` when the held-out accuracy reaches *threshold*, else ``notify``."""
    return "deploy" if metrics["accuracy"] >= threshold else "notify"


@task(tags=["deploy"], cache=True, cache_on=())  # ctx: the run id names the folder only
def deploy(
    model: Any,
    feats: dict[str, Any],
    metrics: dict[str, float],
    model_dir: str,
    ctx: Any,
) -> dict[str, Any]:
    """Write model, scaler and metrics to ``<model_dir>/digits/<run id>/``.

    The folder is named after the run, so a re-run of this task overwrites, never duplicates.
    """
    note("deploy")
    root = Path(model_dir or Path(os.environ.get("ROTA_HOME", Path.home() / ".rota")) / "models")
    target = private_folder(root / "digits" / ctx.run_id)
    tmp = target / "model.pkl.tmp"
    write_private(tmp, pickle.dumps({"model": model, "scaler": feats["scaler"]}))
    tmp.replace(target / "model.pkl")
    write_private(target / "metrics.json", json.dumps(metrics, indent=2).encode())
    print(f"deployed to {target}")
    return {"deployed": True, "accuracy": metrics["accuracy"], "path": str(target)}


@task(tags=["deploy"])
def notify(metrics: dict[str, float], threshold: float) -> dict[str, Any]:
    """Say that the model was not deployed, and why (a real pipeline would page someone)."""
    note("notify")
    accuracy = metrics["accuracy"]
    print(f"not deployed: accuracy {accuracy:.4f} < threshold {threshold}")
    return {"deployed": False, "accuracy": accuracy, "path": None}


@flow
def ml_pipeline(
    threshold: float = 0.9,
    epochs: int = 10,
    test_size: float = 0.25,
    seed: int = 0,
    model_dir: str = "",
    fail_at_epoch: int = 0,
) -> None:
    """Train a digit classifier; deploy it if good enough, else say why not."""
    feats = features(clean(extract()), test_size=test_size, seed=seed)
    model = train(feats, epochs=epochs, seed=seed, fail_at_epoch=fail_at_epoch)
    metrics = evaluate(model, feats)
    deploy_or_notify(metrics, threshold=threshold) >> [
        deploy(model, feats, metrics, model_dir=model_dir),
        notify(metrics, threshold=threshold),
    ]
