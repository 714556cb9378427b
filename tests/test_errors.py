"""One exception root: every error tether raises is a TetherException."""

from __future__ import annotations

import inspect

import tether
from tether import errors
from tether.protocol import Code


def test_every_exception_of_the_library_derives_from_one_root() -> None:
    classes = [
        obj
        for _, obj in inspect.getmembers(errors, inspect.isclass)
        if issubclass(obj, BaseException) and obj.__module__ == errors.__name__
    ]
    assert len(classes) >= 10
    for cls in classes:
        assert issubclass(cls, errors.TetherException), cls
        assert cls.__name__ in errors.__all__


def test_the_public_package_exports_the_root_and_the_common_errors() -> None:
    for name in ("TetherException", "TetherError", "AppError", "StoreError", "BadValue"):
        assert getattr(tether, name) is getattr(errors, name)


def test_errors_keep_the_builtin_bases_callers_already_catch() -> None:
    assert issubclass(errors.AppError, TypeError)
    assert issubclass(errors.BadValue, ValueError)
    assert issubclass(errors.SettingsError, ValueError)
    assert issubclass(errors.StoreUnavailable, errors.StoreError)
    assert issubclass(errors.RemoteProtocolError, errors.ProtocolError)


def test_a_remote_protocol_error_carries_the_code_to_answer_with() -> None:
    exc = errors.RemoteProtocolError(Code.BAD_JSON, "invalid JSON", id=None)
    assert (exc.code, exc.message, exc.id) == ("bad_json", "invalid JSON", None)


def test_the_client_only_codes_are_in_the_code_table() -> None:
    assert Code.CONNECTION_CLOSED == "connection_closed"
    assert Code.SESSION_LOST == "session_lost"
