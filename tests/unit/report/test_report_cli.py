"""`bridle report RUN_DIR [--output FILE] [--samples N]` through the command line's own entry point."""

from __future__ import annotations

import re

import pytest
from report_dirs import write_eval_dir

import bridle.cli.main as cli

MODULE = "bridle.cli.report_commands"


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    """The command as main.py will list it (a no-op once it is listed there)."""
    if MODULE not in cli.TOOL_COMMANDS:
        monkeypatch.setattr(cli, "TOOL_COMMANDS", [*cli.TOOL_COMMANDS, MODULE])


def test_report_command_writes_the_page_with_n_samples(tmp_path, capsys):
    run = write_eval_dir(tmp_path / "eval")
    out = tmp_path / "pages" / "eval.html"
    assert cli.main(["report", str(run), "--output", str(out), "--samples", "2"]) == 0
    assert len(re.findall(r'<tr class="sample">', out.read_text())) == 2
    assert "wrote" in capsys.readouterr().err and not (run / "report.html").exists()
    assert cli.main(["report", str(run)]) == 0 and (run / "report.html").is_file()


def test_report_command_refuses_what_it_cannot_read(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "no recipe_state.json, run.json or report.json" in capsys.readouterr().err
    assert cli.main(["report", str(write_eval_dir(tmp_path / "e")), "--samples", "-1"]) == 2
    assert "--samples must be 0 or more" in capsys.readouterr().err
