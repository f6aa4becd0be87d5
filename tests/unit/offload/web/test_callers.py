from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from offload.errors import Forbidden, Unauthenticated
from offload.settings import Settings
from offload.web.callers import LOCAL_CALLER, Callers


def jwt_event(claims: dict[str, Any] | None) -> dict[str, Any]:
    authorizer = {} if claims is None else {"jwt": {"claims": claims, "scopes": None}}
    return {"version": "2.0", "requestContext": {"authorizer": authorizer}}


def test_without_auth_everyone_is_the_local_caller() -> None:
    callers = Callers(Settings(auth="none"))
    assert callers.caller({}, None) == LOCAL_CALLER
    assert callers.caller({"authorization": "Bearer whatever"}, jwt_event({"sub": "x"})) == "local"
    callers.check_operator(LOCAL_CALLER)


def test_jwt_caller_is_the_verified_subject() -> None:
    callers = Callers(Settings(auth="jwt"))
    assert callers.caller({}, jwt_event({"sub": "user-1", "email": "a@b.c"})) == "user-1"


@pytest.mark.parametrize(
    "event",
    [
        None,
        {},
        {"requestContext": {}},
        jwt_event(None),
        jwt_event({}),
        jwt_event({"sub": ""}),
        jwt_event({"sub": 42}),
        {"requestContext": {"authorizer": {"jwt": "not a mapping"}}},
    ],
)
def test_jwt_without_a_subject_is_unauthenticated(event: dict[str, Any] | None) -> None:
    with pytest.raises(Unauthenticated):
        Callers(Settings(auth="jwt")).caller({"authorization": "Bearer forged"}, event)


def test_tokens_map_to_callers() -> None:
    callers = Callers(Settings(auth="tokens", api_tokens="t-alice=alice, t-bob = bob"))
    assert callers.caller({"authorization": "Bearer t-alice"}, None) == "alice"
    assert callers.caller({"authorization": "bearer  t-bob"}, None) == "bob"
    for header in ({}, {"authorization": "Bearer"}, {"authorization": "Basic t-alice"}):
        with pytest.raises(Unauthenticated):
            callers.caller(header, None)
    with pytest.raises(Unauthenticated, match="not known"):
        callers.caller({"authorization": "Bearer t-carol"}, None)


def test_only_named_operators_may_work_dead_letters() -> None:
    callers = Callers(Settings(auth="tokens", api_tokens="a=alice,b=bob", operators="bob"))
    callers.check_operator("bob")
    with pytest.raises(Forbidden):
        callers.check_operator("alice")


@pytest.mark.parametrize(
    ("tokens", "message"),
    [(None, "needs OFFLOAD_API_TOKENS"), ("", "needs"), ("alice", "entry 1"), ("a=,b=c", "entry")],
)
def test_tokens_mode_refuses_to_start_with_unreadable_tokens(
    tokens: str | None, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(auth="tokens", api_tokens=tokens)


def test_auth_defaults_to_jwt_on_lambda_and_none_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    assert Settings().auth_mode == "none"
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "offload-api")
    assert Settings().auth_mode == "jwt"
    assert Settings(auth="tokens", api_tokens="t=x").auth_mode == "tokens"


def test_tokens_stay_out_of_reprs() -> None:
    assert "secret-token" not in repr(Settings(auth="tokens", api_tokens="secret-token=alice"))
