"""Progress reaches a pipe line by line: `loom launch ... | tee` shows each line as it is printed."""

from __future__ import annotations

import io
import sys

from framework import cli


def test_every_line_reaches_a_pipe_as_it_is_printed(monkeypatch):
    raw = io.BytesIO()
    pipe = io.TextIOWrapper(raw, encoding="utf-8")  # not a terminal: block-buffered by default
    monkeypatch.setattr(sys, "stdout", pipe)
    seen: dict[str, bytes] = {}

    def long_command(ns):
        print("[1/7] create training.train ...")  # a plain print, as engines' and waits' lines
        seen["before the step ends"] = raw.getvalue()
        return 0

    monkeypatch.setitem(cli.COMMANDS, "schema", long_command)
    assert cli.main(["schema"]) == 0
    assert b"[1/7] create training.train ...\n" in seen["before the step ends"]
