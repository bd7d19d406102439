"""rota.model.secrets: which names are secret, the store's form of a run's parameters and back,
what people see, and the masker that replaces secret values inside text."""

from __future__ import annotations

import json
import pickle
import shlex
import urllib.parse

import pytest

from rota import Flow, PythonTask, Secret, flow, task
from rota.errors import DefinitionError, ParameterError, SecretNotSet
from rota.model.callbacks import CallbackContext
from rota.model.dag import REQUIRED, ParamSpec
from rota.model.secrets import (
    MASK,
    Masker,
    display_params,
    given_secrets,
    is_sensitive_name,
    param_env_name,
    reveal,
    run_params,
    secret_environment,
    stored_params,
    unstored_params,
)

TOKEN = "tok-hunter2-XYZ"


@pytest.mark.parametrize(
    "name",
    [
        "secret",
        "client_secret",
        "PASSWORD",
        "db_passwd",
        "api_token",
        "GITHUB_TOKEN",
        "api_key",
        "api-key",
        "ApiKey",
        "private_key",
        "aws_credentials",
        "credential",
    ],
)
def test_sensitive_names(name: str) -> None:
    assert is_sensitive_name(name)


@pytest.mark.parametrize("name", ["epochs", "user", "host", "key", "private", "passage", "apikye"])
def test_other_names_are_not_sensitive(name: str) -> None:
    assert not is_sensitive_name(name)


# --- rota.Secret --------------------------------------------------------------------------------


def test_secret_is_a_reference_read_from_the_environment() -> None:
    s = Secret("API_TOKEN")
    assert repr(s) == "Secret('API_TOKEN')"
    assert s.reveal({"API_TOKEN": TOKEN}) == TOKEN
    assert TOKEN not in repr(s) and TOKEN.encode() not in pickle.dumps(s)
    with pytest.raises(SecretNotSet, match="API_TOKEN") as err:
        s.reveal({})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("bad", ["", "1ABC", "A B", "A=B", "$HOME", 42])
def test_secret_needs_an_environment_variable_name(bad: object) -> None:
    with pytest.raises(DefinitionError, match=r"rota\.Secret"):
        Secret(bad)  # type: ignore[arg-type]


def test_reveal_reads_secrets_inside_containers_and_reports_them() -> None:
    value = {"a": [Secret("A"), ("x", Secret("B"))], "n": 1}
    found: list[str] = []
    out = reveal(value, {"A": "alpha-1", "B": "beta-22"}, found)
    assert out == {"a": ["alpha-1", ("x", "beta-22")], "n": 1}
    assert sorted(found) == ["alpha-1", "beta-22"]
    plain = {"a": [1, 2], "b": "c"}
    assert reveal(plain, {}) is plain  # nothing to read: the same object


# --- the store's form ---------------------------------------------------------------------------


def test_stored_params_keep_no_secret() -> None:
    values = {
        "api_token": TOKEN,
        "epochs": 3,
        "db": {"host": "db.local", "password": "pw-s3cr3t", "opts": [{"secret": "deep-one"}]},
        "credentials": ["user-x", "key-y"],
        "key": Secret("MY_KEY"),
        "use_token": True,
        "api_key": None,
    }
    stored = stored_params(values, {"epochs": 3})
    text = json.dumps(stored)
    for secret in (TOKEN, "pw-s3cr3t", "deep-one", "user-x", "key-y"):
        assert secret not in text
    assert stored["epochs"] == 3
    assert stored["db"]["host"] == "db.local"
    assert stored["key"] == {"$rota_secret": "MY_KEY"}
    assert stored["use_token"] is True and stored["api_key"] is None  # carry no secret
    assert stored_params(stored) == stored  # the stored form stays as it is
    assert unstored_params(stored) == {"api_token": "given", "db": "given", "credentials": "given"}


def test_a_secret_that_kept_its_default_is_marked_as_the_default() -> None:
    stored = stored_params(
        {"api_token": "from-code", "password": "typed"}, {"api_token": "from-code"}
    )
    assert unstored_params(stored) == {"api_token": "default", "password": "given"}
    assert given_secrets({"api_token": "x", "p": Secret("P")}, {}) == ["api_token"]
    assert given_secrets({"api_token": "from-code"}, {"api_token": "from-code"}) == []


SPECS = (
    ParamSpec("api_token", REQUIRED),
    ParamSpec("password", "pw-from-code"),
    ParamSpec("epochs", 3),
    ParamSpec("key", Secret("MY_KEY")),
    ParamSpec("db", {"host": "h", "password": "x"}),
)


def stored_run() -> dict[str, object]:
    values = {
        "api_token": TOKEN,
        "password": "pw-from-code",
        "epochs": 5,
        "key": Secret("MY_KEY"),
        "db": {"host": "h2", "password": "given-pw"},
    }
    return stored_params(values, {s.name: s.default for s in SPECS if s.default is not REQUIRED})


def test_run_params_take_what_the_store_lacks_from_given_values_then_the_environment() -> None:
    db = {"host": "h2", "password": "given-pw"}
    out = run_params("r1", stored_run(), SPECS, {"api_token": TOKEN, "db": db}, {})
    assert out == {
        "api_token": TOKEN,
        "password": "pw-from-code",  # the run used the default: taken from the flow again
        "epochs": 5,
        "key": Secret("MY_KEY"),  # a reference: the worker reads it
        "db": db,
    }
    environ = {"ROTA_PARAM_API_TOKEN": TOKEN, "ROTA_PARAM_DB": json.dumps(db)}
    assert run_params("r1", stored_run(), SPECS, {}, environ) == out


def test_run_params_name_the_missing_secret_in_one_line() -> None:
    with pytest.raises(ParameterError) as err:
        run_params("r1", stored_run(), SPECS, {"db": {}}, {})
    text = str(err.value)
    assert "'api_token'" in text and "ROTA_PARAM_API_TOKEN" in text and "-p api_token=" in text
    assert "\n" not in text


def test_run_params_refuse_a_value_the_store_keeps() -> None:
    with pytest.raises(ParameterError, match="'epochs' is stored with run r1"):
        run_params("r1", stored_run(), SPECS, {"api_token": "t", "db": {}, "epochs": 9}, {})


def test_secret_environment_names_what_the_store_lacks() -> None:
    env = secret_environment({"api_token": TOKEN, "epochs": 2, "db": {"password": "pw-1"}})
    assert env == {"ROTA_PARAM_API_TOKEN": TOKEN, "ROTA_PARAM_DB": '{"password": "pw-1"}'}
    assert param_env_name("my-token.x") == "ROTA_PARAM_MY_TOKEN_X"


# --- what people see ----------------------------------------------------------------------------


def test_display_params_show_every_secret_as_a_mask() -> None:
    values = {"api_token": TOKEN, "n": 1, "db": {"password": "pw", "host": "h"}, "k": Secret("K")}
    assert display_params(values) == {
        "api_token": MASK,
        "n": 1,
        "db": {"password": MASK, "host": "h"},
        "k": MASK,
    }
    assert display_params(stored_params(values)) == display_params(values)


def test_callback_context_masks_params_and_the_error() -> None:
    ctx = CallbackContext(
        event="failure",
        run_id="r",
        flow="f",
        state="failed",
        error_message=f"rejected {TOKEN}",
        traceback=f"Traceback...\nValueError: rejected {TOKEN}\n",
        params={"api_token": TOKEN, "n": 2, "k": Secret("K")},
    )
    assert ctx.params == {"api_token": MASK, "n": 2, "k": MASK}
    assert ctx.error_message == "rejected ***"
    assert ctx.traceback is not None and TOKEN not in ctx.traceback
    assert TOKEN not in json.dumps(ctx.to_json())


# --- the masker ---------------------------------------------------------------------------------


def test_masker_replaces_values_inside_text_longest_first() -> None:
    masker = Masker(["abcdef", "abcdefgh"])
    assert masker.redact("x=abcdefgh; y=abcdef.") == "x=***; y=***."


def test_masker_knows_quoted_escaped_and_encoded_forms() -> None:
    value = 'it\'s a "p@ss" / word'
    masker = Masker([value])
    for form in (value, shlex.quote(value), json.dumps(value), urllib.parse.quote(value, safe="")):
        assert value not in masker.redact(f"<{form}>")
        assert "***" in masker.redact(f"<{form}>")


def test_masker_masks_each_line_of_a_multi_line_secret() -> None:
    key = "-----BEGIN KEY-----\nMIIBVwIBADANBgkqhkiG9w0B\n-----END KEY-----"
    masker = Masker([key])
    assert "MIIBVwIBADANBgkqhkiG9w0B" not in masker.redact("line 2 only: MIIBVwIBADANBgkqhkiG9w0B")


def test_masker_leaves_short_values_and_other_text_alone() -> None:
    masker = Masker(["abcd", None, True, 12345678])
    assert masker.redact("abcd 12345678 rest") == "abcd *** rest"
    assert not Masker(["ab"])


def test_masker_of_params_knows_only_values_under_sensitive_names() -> None:
    masker = Masker.of_params(
        {"api_token": TOKEN, "epochs": "100000", "db": {"password": "pw-123456"}}
    )
    assert masker.redact(f"{TOKEN} 100000 pw-123456") == "*** 100000 ***"
    masker.add_secrets({"k": Secret("K"), "m": Secret("MISSING")}, {"K": "value-of-k"})
    assert masker.redact("value-of-k") == "***"


# --- flows record their defaults ----------------------------------------------------------------


@task
def noop(x: object) -> None:
    del x


KEY = Secret("K")


def test_flows_carry_their_parameter_defaults() -> None:
    @flow
    def f(api_token: str, password: str = "pw", key: Secret = KEY) -> None:
        noop(api_token)

    dag = f.build({"api_token": TOKEN})
    assert dag.param_defaults == {"password": "pw", "key": Secret("K")}
    with Flow("g", params={"token": "t-1"}) as g:
        PythonTask("a", noop, args=(1,))
    assert g.build().param_defaults == {"token": "t-1"}
