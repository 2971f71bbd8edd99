"""config.access_log writes exactly uvicorn's access line, and the server uses it."""

from __future__ import annotations

import logging

import pytest
from uvicorn.config import LOGGING_CONFIG
from uvicorn.logging import AccessFormatter as UvicornAccessFormatter

from config.access_log import LINE, AccessFormatter, log_config

ARGS = [
    ("127.0.0.1:50312", "POST", "/api/v1/workspaces/acme/flow-runs/1f0c/set-state/", "1.1", 200),
    ("10.0.0.7:1", "GET", "/api/v1/workspaces/acme/flow-runs/?state_type=RUNNING&limit=5", "1.1", 404),
    ("[::1]:8080", "DELETE", "/x%20y", "2", 599),  # no phrase for 599
    ("1.2.3.4:5", "PATCH", "/", "1.0", 101),
]


def _record(args, level=logging.INFO):
    return logging.LogRecord("uvicorn.access", level, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None)


@pytest.mark.parametrize("args", ARGS)
@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING, logging.ERROR])
@pytest.mark.parametrize("colours", [False, True])
def test_the_line_is_uvicorns(args, level, colours):
    ours = AccessFormatter(LINE, use_colors=colours).format(_record(args, level))
    theirs = UvicornAccessFormatter(LINE, use_colors=colours).format(_record(args, level))
    assert ours == theirs
    assert args[2] in ours


def test_another_format_is_left_to_uvicorn():
    fmt = "%(asctime)s %(levelprefix)s %(client_addr)s %(status_code)s"
    record = _record(ARGS[0])
    assert AccessFormatter(fmt, use_colors=False).format(record) == \
        UvicornAccessFormatter(fmt, use_colors=False).format(record)


def test_without_colours_the_line_is_written_without_uvicorns_copies(monkeypatch):
    def refuse(self, record):
        raise AssertionError("uvicorn's formatMessage was used")

    monkeypatch.setattr(UvicornAccessFormatter, "formatMessage", refuse)
    assert AccessFormatter(LINE, use_colors=False).format(_record(ARGS[0])).endswith(" 200 OK")
    with pytest.raises(AssertionError):
        AccessFormatter(LINE, use_colors=True).format(_record(ARGS[0]))


def test_the_server_configures_it_and_leaves_the_rest_as_uvicorns():
    config = log_config()
    assert config["formatters"]["access"] == {**LOGGING_CONFIG["formatters"]["access"],
                                              "()": "config.access_log.AccessFormatter"}
    assert config["formatters"]["access"]["fmt"] == LINE
    assert {k: v for k, v in config.items() if k != "formatters"} == \
        {k: v for k, v in LOGGING_CONFIG.items() if k != "formatters"}
    assert LOGGING_CONFIG["formatters"]["access"]["()"] == "uvicorn.logging.AccessFormatter"  # not changed in place
