"""A hyper-parameter search: one task instance per point of a grid, and a task that picks the best.

The digits data set (it ships with scikit-learn) is split into train, validation and test parts.
``fit.map(...)`` makes one instance per value of the regularisation strength ``C`` of a logistic
regression, at run time; each instance trains on the train part, scores on the validation part,
retries and caches on its own. ``pick_best`` receives the list of every instance's result, in the
grid's order, and keeps the best validation score; ``final_score`` scores that model on the test
part, which no choice looked at.

    rota run examples/hyperparameter_search.py -p steps=6
    rota runs show RUN_ID        # fit has one instance per grid point

Run it again with the same grid and every fit is cached (same code, same inputs): only the
cheap ``grid`` and ``pick_best`` steps run again.
"""

from __future__ import annotations

from typing import Any

from rota import flow, task, unmapped


@task(cache=True)
def split(seed: int) -> dict[str, Any]:
    """Train (60%), validation (20%) and test (20%) parts, stratified by digit."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_rest, X_test, y_rest, y_test = train_test_split(
        X, y, test_size=0.2, random_state=seed, stratify=y
    )
    X_train, X_val, y_train, y_val = train_test_split(
        X_rest, y_rest, test_size=0.25, random_state=seed, stratify=y_rest
    )
    return {"train": (X_train, y_train), "val": (X_val, y_val), "test": (X_test, y_test)}


@task
def grid(steps: int) -> list[float]:
    """*steps* values of C, evenly spaced in log scale from 0.001 to 100."""
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}")
    return [round(10 ** (-3 + 5 * i / (steps - 1)), 6) for i in range(steps)]


@task(cache=True, retries=1)
def fit(c: float, data: dict[str, Any]) -> dict[str, Any]:
    """A logistic regression with regularisation strength *c*, and its validation accuracy."""
    from sklearn.linear_model import LogisticRegression

    X_train, y_train = data["train"]
    X_val, y_val = data["val"]
    model = LogisticRegression(C=c, max_iter=500).fit(X_train, y_train)
    accuracy = round(float(model.score(X_val, y_val)), 4)
    print(f"C={c}: validation accuracy {accuracy}")
    return {"c": c, "val_accuracy": accuracy, "model": model}


@task
def pick_best(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The result with the best validation accuracy (the smaller C on a tie: simpler model)."""
    best = max(results, key=lambda r: (r["val_accuracy"], -r["c"]))
    print(f"best: C={best['c']} with validation accuracy {best['val_accuracy']}")
    return best


@task
def final_score(best: dict[str, Any], data: dict[str, Any]) -> dict[str, float]:
    """The chosen model's accuracy on the test part, next to its C and validation score."""
    X_test, y_test = data["test"]
    accuracy = round(float(best["model"].score(X_test, y_test)), 4)
    print(f"test accuracy of C={best['c']}: {accuracy}")
    return {"c": best["c"], "val_accuracy": best["val_accuracy"], "test_accuracy": accuracy}


@flow
def hyperparameter_search(steps: int = 5, seed: int = 0) -> None:
    """Fit one model per grid point, keep the best on validation, score it on test."""
    data = split(seed)
    results = fit.map(grid(steps), data=unmapped(data))
    final_score(pick_best(results), data)
