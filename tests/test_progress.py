"""The grid progress: a tqdm bar on a terminal, a line every ~10% of the cells elsewhere."""

from __future__ import annotations

import io

from landscape_taxonomy.cells.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_a_line_about_every_tenth_of_the_cells_to_compute():
    buf = io.StringIO()
    p = Progress("compute-metrics", 105, done=5, stream=buf)
    for i in range(100):
        p.start()
        p.finish(ok=i != 3)
    p.close()
    lines = buf.getvalue().splitlines()
    assert "\r" not in buf.getvalue()
    assert lines[0].startswith("[compute-metrics] 5/105 cells done (5 reused), 0 running")
    assert [ln.split()[1] for ln in lines[1:-1]] == [f"{5 + 10 * k}/105" for k in range(1, 11)]
    assert all("1 failed" in ln and "left" in ln for ln in lines[1:-1])
    assert lines[-2].endswith("~00:00 left") and lines[-1].startswith(
        "[compute-metrics] finished in")


def test_on_a_terminal_a_bar_with_the_time_left():
    term = Terminal()
    p = Progress("train-grid", 4, done=1, stream=term)
    p.start()
    p.finish(True)
    p.close()
    out = term.getvalue()
    assert "\r" in out and "2/4 cells" in out and "1 reused, 0 running, 0 failed" in out
    assert "<" in out.split("2/4 cells")[-1]  # [elapsed<remaining]
    assert out.splitlines()[-1].startswith("[train-grid] finished in")


def test_nothing_to_compute_says_nothing_is_left():
    buf = io.StringIO()
    Progress("plot", 3, done=3, stream=buf).close()
    assert buf.getvalue().splitlines()[0] == (
        "[plot] 3/3 cells done (3 reused), 0 running, 0 failed, ~00:00 left")
