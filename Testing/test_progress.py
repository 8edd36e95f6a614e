"""Progress of the long stages (`progress.task`, rendered by `progress.console_progress`) and
--threads (`cli.arguments`): plain lines with the stage, done / total and the time left when the
output is not a terminal, a tqdm bar on a terminal, silence when the library is called from
Python, and the thread count of every computing command. Each test takes about a second: the
bundled kidney prior on a quarter-size synthetic kidney, N = 2 patches of 3^3 voxels."""
import io
import json

import pytest
import torch

from PatchSamplerLib import progress
from PatchSamplerLib.cli.arguments import positive_int, threads_applied
from PatchSamplerLib.cli.main import build_parser, main
from PatchSamplerLib.data.synthetic import make_shape
from PatchSamplerLib.progress import ConsoleProgress, Monitor, Progress, console_progress, task, tracked
from PatchSamplerLib.volume import write_volume


class Terminal(io.StringIO):
    def isatty(self):
        return True


class FakeClock:
    """progress._now, advanced by hand (seconds)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(progress, "_now", fake)
    return fake


@pytest.fixture
def every_update(monkeypatch):
    """Plain lines on every update (no minimum gap), so a one-second run shows its lines."""
    monkeypatch.setattr(progress, "PLAIN_INTERVAL_S", 0.0)
    monkeypatch.setattr(progress, "PLAIN_GROWTH", 0.0)


@pytest.fixture(scope="module")
def kidney_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("progress") / "kidney.nii.gz"
    write_volume(path, make_shape("kidney", 1, 0, scale=0.25))
    return path


RUN = ["--prior", "kidney", "--n", "2", "--k", "3", "--t", "20"]


# ------------------------------------------------------------------ progress: plain lines
def test_plain_lines_name_the_stage_with_done_total_and_the_time_left(clock):
    out = io.StringIO()
    with console_progress(out, interval=5.0, bars=False):
        with task("latent fit", 100) as fit:
            for step in range(1, 101):
                clock.now += 1.0                   # one second per step
                fit.update(step)
    lines = out.getvalue().splitlines()
    assert lines[0] == "latent fit: 5/100 steps (5%), 5.0 s elapsed, about 1 min 35 s left"
    assert lines[1].startswith("latent fit: 10/100 steps (10%), 10.0 s elapsed, about 1 min 30 s left")
    assert lines[-1] == "latent fit: done, 100/100 steps in 1 min 40 s"
    assert len(lines) == 10 + 6 + 1        # every 5 s up to 50 s, then every tenth of the time elapsed; the end


def test_the_time_left_leaves_out_a_slow_first_step(clock):
    out = io.StringIO()
    with console_progress(out, interval=5.0, bars=False):
        with task("latent fit", 100) as fit:
            clock.now += 4.0                       # imports and allocations before the first step ends
            fit.update(1)
            for step in range(2, 101):
                clock.now += 0.5
                fit.update(step)
    assert out.getvalue().splitlines()[0] == "latent fit: 3/100 steps (3%), 5.0 s elapsed, about 48.5 s left"


def test_a_long_run_prints_a_short_log(clock):
    out = io.StringIO()
    with console_progress(out, bars=False):
        with task("latent fit", 2820) as fit:          # 47 minutes (N = 64, K = 31 on a loaded 2-core CPU)
            for step in range(1, 2821):
                clock.now += 1.0
                fit.update(step)
    lines = out.getvalue().splitlines()
    assert 40 <= len(lines) <= 60
    assert lines[-2].endswith("left") and "latent fit: done, 2,820/2,820 steps in 47 min 00 s" == lines[-1]


def test_nested_tasks_share_one_line_and_only_the_outer_one_ends_with_a_line(clock):
    out = io.StringIO()
    with console_progress(out, interval=5.0, bars=False):
        for _ in tracked(range(2), "validation", unit="shapes"):
            with task("latent fit", 10) as fit:
                for step in range(1, 11):
                    clock.now += 1.0
                    fit.update(step)
    lines = out.getvalue().splitlines()
    assert lines[0] == ("validation: 0/2 shapes (0%), 5.0 s elapsed, time left unknown | "
                        "latent fit: 5/10 steps (50%), 5.0 s elapsed, about 5.0 s left")
    assert "validation: 1/2 shapes (50%), 15.0 s elapsed, about 15.0 s left | latent fit: 5/10" in lines[3]
    assert lines[-1] == "validation: done, 2/2 shapes in 20.0 s"
    assert sum(line.startswith("latent fit: done") for line in lines) == 2   # each took 10 s >= 5 s


def test_a_failed_task_ends_without_a_line_and_an_unknown_total_shows_the_time():
    out = io.StringIO()
    with console_progress(out, interval=0.0, bars=False):
        with pytest.raises(RuntimeError):
            with task("decode", unit="points") as decoding:
                decoding.advance(65536)
                raise RuntimeError("out of memory")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("decode: 65,536 points, ") and lines[0].endswith(" elapsed")


# ------------------------------------------------------------------ progress: a terminal, Python, Slicer
def test_a_terminal_gets_a_tqdm_bar_with_the_time_left():
    screen = Terminal()
    with console_progress(screen) as console:
        assert console.bars
        with task("latent fit", 20) as fit:
            for step in range(1, 21):
                fit.update(step)
    text = screen.getvalue()
    assert text.startswith("\rlatent fit:   0%|") and "20/20 [" in text and "<00:00" in text and text.endswith("\n")


def test_prints_go_above_the_bars_on_a_terminal(monkeypatch):
    import sys
    screen, printed = Terminal(), Terminal()
    monkeypatch.setattr(sys, "stdout", printed)
    with console_progress(screen):
        with task("evaluation", 2, "runs") as runs:
            print("case 1/2", end="")
            print(" kidney: 1.0 s")
            runs.advance()
    assert printed.getvalue() == "case 1/2 kidney: 1.0 s\n" and sys.stdout is printed
    cleared, redrawn = screen.getvalue().split("\r" + " " * 20, 1)          # the bar is cleared for the line
    assert "evaluation:   0%|" in cleared and "evaluation:  50%|" in redrawn


def test_the_library_is_quiet_without_a_console_and_monitor_callbacks_are_unchanged(capsys):
    seen = []
    monitor = Monitor(lambda stage, fraction: seen.append((stage, round(fraction, 3))))
    timings = {}
    with monitor.stage("latent_fit", timings, total=20, every=10) as tick:
        for step in range(1, 21):
            tick(step)
    with monitor.stage("decode", timings, unit="points") as tick:
        tick(20, 40)
        tick(40, 40)
    assert seen == [("latent_fit", 0.1), ("latent_fit", 0.45), ("latent_fit", 0.8),
                    ("decode", 0.8), ("decode", 0.875), ("decode", 0.95)]
    assert set(timings) == {"latent_fit", "decode"}
    assert capsys.readouterr() == ("", "")


def test_the_epoch_bar_is_the_consoles_task_under_a_console(clock):
    out, log = io.StringIO(), io.StringIO()
    with console_progress(out, interval=5.0, bars=False):
        epoch = Progress(40, "epoch 1/3", stream=log)
        for done in range(8, 41, 8):
            clock.now += 3.0
            epoch.update(done, "loss 0.5")
        epoch.done("loss 0.4")
    assert out.getvalue().splitlines()[0] == "epoch 1/3: 16/40 shapes (40%), 6.0 s elapsed, about 9.0 s left"
    assert log.getvalue().startswith("epoch 1/3: loss 0.4 (")          # the log line, as without a console


# ------------------------------------------------------------------ progress: the commands
def test_run_shows_the_latent_fit_and_the_decode_with_the_time_left(kidney_file, tmp_path, capsys, every_update):
    assert main(["run", "--input", str(kidney_file), *RUN, "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err.splitlines()
    fit = [line for line in err if line.startswith("latent fit: ")]
    assert fit[0].startswith("latent fit: 1/20 steps (5%), ") and "elapsed, about " in fit[0]
    assert fit[1].startswith("latent fit: 2/20 steps (10%), ") and fit[1].endswith(" left")
    assert fit[-1].startswith("latent fit: done, 20/20 steps in ")
    decode = [line for line in err if line.startswith("decode: ")]
    assert decode and decode[-1].startswith("decode: done, ") and " points in " in decode[-1]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["dice"] > 0


def test_reconstruct_slices_and_ceiling_show_their_fit(kidney_file, tmp_path, capsys, every_update):
    assert main(["reconstruct-slices", "--input", str(kidney_file), "--step", "3", "--prior", "kidney", "--steps", "20",
                 "--points-per-step", "512", "--out", str(tmp_path / "slices")]) == 0
    err = capsys.readouterr().err
    assert "latent fit: 10/20 steps (50%), " in err and "latent fit: done, 20/20 steps in " in err
    assert "decode: done, " in err
    assert main(["ceiling", "--input", str(kidney_file), "--prior", "kidney", "--steps", "10",
                 "--points-per-step", "512"]) == 0
    assert "latent fit: done, 10/10 steps in " in capsys.readouterr().err


def test_prior_validation_shows_each_shape_and_its_fit(every_update):
    from PatchSamplerLib.method.inr import OccupancyDecoder
    from PatchSamplerLib.training.prior import PriorConfig, validation_dice
    shapes = [make_shape("kidney", 1, i, scale=0.25) for i in range(2)]
    out = io.StringIO()
    with console_progress(out, bars=False):
        validation_dice(OccupancyDecoder(), shapes, PriorConfig(val_n=2, val_k=3, val_t=4))
    text = out.getvalue()
    assert "validation: 1/2 shapes (50%), " in text and " | latent fit: 4/4 steps (100%)" in text
    assert text.splitlines()[-1].startswith("validation: done, 2/2 shapes in ")


# ------------------------------------------------------------------ --threads
def test_threads_0_is_refused_before_any_work(kidney_file, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--input", str(kidney_file), *RUN, "--threads", "0", "--out", str(out)])
    assert exit_.value.code == 2
    assert "argument --threads: must be an integer >= 1, got 0" in capsys.readouterr().err
    assert not out.exists()


def subcommands():
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_every_command_takes_threads_and_refuses_fewer_than_one(command, capsys):
    option = next(a for a in subcommands()[command]._actions if "--threads" in a.option_strings)
    assert option.type is positive_int and option.default is None
    for bad in ("0", "-2", "two"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--threads", bad])
        assert exit_.value.code == 2 and "argument --threads: must be an integer" in capsys.readouterr().err


def test_threads_1_sets_torch_and_simpleitk_threads_for_the_command_only(kidney_file, tmp_path, monkeypatch):
    import SimpleITK as sitk
    from PatchSamplerLib.cli import run as run_commands
    seen = []
    monkeypatch.setattr(run_commands, "run_main", lambda args: seen.append(
        (torch.get_num_threads(), sitk.ProcessObject.GetGlobalDefaultNumberOfThreads())) or 0)
    before = torch.get_num_threads(), sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    other = 2 if before[0] == 1 else 1
    torch.set_num_threads(other)
    try:
        assert main(["run", "--input", str(kidney_file), *RUN, "--threads", "1", "--out", str(tmp_path / "o")]) == 0
        assert seen == [(1, 1)]
        assert torch.get_num_threads() == other                    # restored after the command
        args = build_parser().parse_args(["benchmark", "--threads", "3", "--out", str(tmp_path / "b")])
        with threads_applied(args) as threads:
            assert threads == torch.get_num_threads() == 3
        args = build_parser().parse_args(["benchmark", "--out", str(tmp_path / "b")])
        with threads_applied(args) as threads:                     # not given: unchanged
            assert threads == torch.get_num_threads() == other
    finally:
        torch.set_num_threads(before[0])
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before[1])


def test_console_progress_uses_plain_lines_when_tqdm_is_missing(monkeypatch):
    monkeypatch.setattr(progress, "_tqdm_available", lambda: False)
    with console_progress(Terminal()) as console:
        assert not console.bars and isinstance(console, ConsoleProgress)
