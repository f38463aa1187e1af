"""metrics.jsonl on --resume: lines after the checkpoint's step go, and a file a killed run left damaged (a torn
last line, a garbage line) is repaired with a note instead of stopping the resume with a traceback."""

from __future__ import annotations

import json

from bridle.engine.logging import RunLog


def rows(step_count: int) -> list[str]:
    return [json.dumps({"step": s, "loss": 1.0 / s}) for s in range(1, step_count + 1)]


def resume(tmp_path, text: str, resume_step: int) -> list[dict]:
    (tmp_path / "metrics.jsonl").write_text(text)
    RunLog(tmp_path, accelerator=None, total_steps=10, show_progress=False, resume_step=resume_step)
    return [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]


def test_resume_keeps_lines_up_to_the_checkpoint_step(tmp_path):
    assert [r["step"] for r in resume(tmp_path, "\n".join(rows(6)) + "\n", resume_step=4)] == [1, 2, 3, 4]


def test_resume_drops_a_torn_last_line_with_a_note(tmp_path, capsys):
    torn = "\n".join(rows(4)) + '\n{"step": 5, "lo'  # killed while writing step 5
    assert [r["step"] for r in resume(tmp_path, torn, resume_step=4)] == [1, 2, 3, 4]
    err = capsys.readouterr().err
    assert "partial last line" in err and str(tmp_path / "metrics.jsonl") in err
    assert "Traceback" not in err


def test_resume_skips_a_garbage_middle_line_naming_its_number(tmp_path, capsys):
    lines = rows(4)
    lines.insert(2, "\x00\x00garbage{")  # line 3 of the file
    lines.insert(4, "[1, 2]")  # valid JSON, yet not a record: line 5
    kept = resume(tmp_path, "\n".join(lines) + "\n", resume_step=3)
    assert [r["step"] for r in kept] == [1, 2, 3]
    err = capsys.readouterr().err
    assert "line 3: not a JSON object" in err and "line 5: not a JSON object" in err
    assert "partial last line" not in err


def test_resume_reads_undecodable_bytes_as_a_garbage_line(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(("\n".join(rows(2)) + "\n").encode() + b"\xff\xfe\x80\n" + rows(3)[-1].encode() + b"\n")
    RunLog(tmp_path, accelerator=None, total_steps=10, show_progress=False, resume_step=3)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3]
    assert "line 3: not a JSON object" in capsys.readouterr().err


def test_task_progress_shows_items_per_second_once_measured():
    import time

    from rich.progress import Progress

    from bridle.engine.logging import ItemsPerSecond

    bar = Progress(ItemsPerSecond())
    task = bar.add_task("x", total=10)
    assert str(bar.columns[0].render(bar.tasks[0])) == "— it/s"
    bar.advance(task, 1)
    time.sleep(0.5)
    bar.advance(task, 1)
    rate = float(str(bar.columns[0].render(bar.tasks[0])).split()[0])
    assert 0.5 < rate < 5  # 1 item in ~0.5 s
