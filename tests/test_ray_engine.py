"""The Ray engine on a real local Ray cluster (4 logical CPUs): the same trace as the local engine, and
exactly once per sample when the driver is killed, when an actor dies mid-batch, and on rerun; a batch that
kills its actor every time fails alone, within the retries; an output folder the actors do not see refused.

The cluster lives for the module and every process it started must be gone after ``ray.shutdown``. Every
trace of the tiny Llama here must equal one local trace of it (``local_reference``).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray
from PIL import Image
from safetensors.numpy import load_file

from evolens.cli import main
from evolens.data.resolve import resolve_samples
from evolens.errors import ModelLoadError, NumericalError, UsageError
from evolens.io.store import finished_sample_ids, read_failures, read_trace
from evolens.models import LoadedModel, load_model
from evolens.tracing import ray_engine
from evolens.tracing.ray_engine import RayEngine
from evolens.tracing.spec import RayOptions
from evolens.tracing.tracer import trace
from tests.ray_support import assert_same_trace, descendants, running, torch_threads

pytestmark = pytest.mark.xdist_group("ray")

PROMPTS = [f"Question number {i}: name a colour." for i in range(10)]


def prompt_id(prompt: str) -> str:
    """The sample id a text-only prompt gets."""
    return resolve_samples(None, prompt)[0].sample_id


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A local Ray cluster with 4 logical CPUs (on any machine); yields its address. Afterwards every
    process it started (GCS, raylet, agents, workers) must have exited."""
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    address = ray.get_runtime_context().gcs_address
    yield address
    started = {pid for pid in descendants(os.getpid()) if running(pid)}
    ray.shutdown()
    deadline = time.monotonic() + 60
    while (left := {pid for pid in started if running(pid)}) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"Ray processes left running after shutdown: {sorted(left)}"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four pictures (a coloured square each, different sizes) and one file that is not an image."""
    folder = tmp_path_factory.mktemp("images")
    for index, colour in enumerate([(230, 20, 20), (20, 200, 20), (20, 20, 230), (230, 230, 20)]):
        side = 64 + 16 * index
        pixels = np.full((side, side + 8, 3), 255, np.uint8)
        pixels[10 : side - 10, 12 : side - 4] = colour
        Image.fromarray(pixels).save(folder / f"shape{index}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


@pytest.fixture(scope="module")
def local_reference(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``PROMPTS`` traced from the tiny Llama's folder by the local engine with one torch thread, as each
    actor traces them: what every Ray trace of them must equal (read only)."""
    out = tmp_path_factory.mktemp("local") / "trace"
    with torch_threads(1):
        result = trace(
            load_model(str(tiny_llama_dir)), None, PROMPTS, out=out, max_new_tokens=4, batch_size=2
        )
    assert len(result.traced) == len(PROMPTS)
    return out


@pytest.mark.slow
def test_ray_trace_equals_the_local_trace(
    ray_cluster: str, demo_vlm: LoadedModel, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo VLM on four images and a broken file, two actors: same samples, tokens, metrics, hidden
    states and failures as the local engine. Paths are relative to a working directory that Ray's workers
    do not share (they keep the one the cluster started in)."""
    monkeypatch.chdir(tmp_path)
    relative = Path(os.path.relpath(images, tmp_path))
    settings = {"max_new_tokens": 6, "batch_size": 2, "keep_hidden": True, "hidden_steps": "0,2"}
    prompt = "What colour is the shape?"
    with torch_threads(1):  # as each actor with one CPU: the same fp32 reductions, so the same numbers
        local = trace(demo_vlm, relative, prompt, out="local", **settings)
    options = RayOptions(actors=2, cpus_per_actor=1)
    result = trace("demo", relative, prompt, out="ray", engine=RayEngine(options), **settings)
    assert sorted(result.traced) == sorted(local.traced) and len(result.traced) == 4
    assert [f["sample_id"] for f in result.failures] == ["broken"]
    assert read_failures(tmp_path / "ray") == read_failures(tmp_path / "local")
    assert_same_trace(tmp_path / "local", tmp_path / "ray")
    parts = sorted(path.name for path in (tmp_path / "ray" / "samples").iterdir())
    assert len(parts) >= 2 and all(name.startswith("part-r") for name in parts)
    for sample_id in local.traced:  # written by the actors, not passed through Ray
        ours, theirs = (
            load_file(tmp_path / d / "hidden" / f"{sample_id}.safetensors") for d in ("ray", "local")
        )
        assert ours.keys() == theirs.keys() == {"hidden", "steps", "layers"}
        for name in ours:
            np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    assert not (tmp_path / "ray" / "ray").exists(), "the manifest is removed after a complete run"


DRIVER = """
import json, os, signal, sys, time
from evolens.models.load import load_model
from evolens.tracing import RayEngine, RayOptions, trace

args = json.loads(sys.argv[1])


def slow_model():
    # 1.5 s per batch, so that the driver dies with batches still to trace
    loaded = load_model(args["model"])
    generate = loaded.generate

    def slow_generate(*positional, **named):
        time.sleep(1.5)
        return generate(*positional, **named)

    loaded.generate = slow_generate
    return loaded


def kill_after_first_outcome(done, total):
    os.kill(os.getpid(), signal.SIGKILL)


trace(slow_model, None, args["prompts"], out=args["out"], max_new_tokens=4, batch_size=2,
      progress=kill_after_first_outcome, engine=RayEngine(RayOptions(address=args["address"])))
"""


@pytest.mark.slow
def test_driver_killed_mid_run_then_rerun_traces_every_sample_once(
    ray_cluster: str, tiny_llama_dir: Path, local_reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "trace"
    args = {"model": str(tiny_llama_dir), "prompts": PROMPTS, "out": str(out), "address": ray_cluster}
    killed = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(args)], capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    before = set(pq.read_table(out / "samples").column("sample_id").to_pylist())
    assert 0 < len(before) < len(PROMPTS), "killed mid-run: some samples committed, not all"
    options = RayOptions(actors=2)
    resumed = trace(
        str(tiny_llama_dir), None, PROMPTS, out=out, max_new_tokens=4, batch_size=2, engine=RayEngine(options)
    )
    assert set(resumed.skipped) >= before and not resumed.failures
    done = resumed.skipped + resumed.traced
    assert len(set(done)) == len(done) == len(PROMPTS)
    assert_same_trace(local_reference, out)
    with pytest.raises(UsageError, match="other settings"):
        trace(
            str(tiny_llama_dir),
            None,
            PROMPTS,
            out=out,
            max_new_tokens=5,
            batch_size=2,
            engine=RayEngine(options),
        )


def load_and_die_once(model_dir: str, marker: Path) -> LoadedModel:
    """Load the model; the first time any actor commits a part, SIGKILL that actor between writing the
    part's steps file and its samples file (``marker`` records that it happened)."""
    import evolens.io.store

    real_write = evolens.io.store.write_bytes

    def write_or_die(path: Path, data: bytes) -> Path:
        if path.parent.name == "samples":
            try:
                marker.touch(exist_ok=False)
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return real_write(path, data)

    evolens.io.store.write_bytes = write_or_die
    return load_model(model_dir)


def load_with_a_failing_prompt(model_dir: str, prompt: str) -> LoadedModel:
    """Load the model; a batch holding ``prompt`` raises NumericalError, as a model that overflows would."""
    loaded = load_model(model_dir)
    build_inputs = loaded.build_inputs

    def build_or_fail(prompts: list[str], images: Any) -> Any:
        if prompt in prompts:
            raise NumericalError(f"NaN in the hidden state of the batch asking '{prompt}'")
        return build_inputs(prompts, images)

    loaded.build_inputs = build_or_fail
    return loaded


@pytest.mark.slow
def test_an_error_in_an_actor_stops_the_run_in_one_line_and_the_rerun_traces_the_rest_once_despite_a_kill(
    ray_cluster: str, tiny_llama_dir: Path, local_reference: Path, tmp_path: Path
) -> None:
    """An error in an actor (the batch asking ``PROMPTS[3]`` overflows) stops the run in one line; the
    rerun traces the rest, and on it an actor killed mid-commit (between a part's steps and samples files)
    is retried: nothing is lost or doubled."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    failing = functools.partial(load_with_a_failing_prompt, str(tiny_llama_dir), PROMPTS[3])
    out = tmp_path / "trace"
    with pytest.raises(NumericalError, match=r"^NaN in the hidden state of the batch asking") as caught:
        trace(failing, None, PROMPTS, out=out, max_new_tokens=4, batch_size=2, engine=RayEngine(RayOptions()))
    assert "Traceback" not in str(caught.value) and "ray::" not in str(caught.value)
    before = finished_sample_ids(out)
    assert prompt_id(PROMPTS[3]) not in before

    marker = tmp_path / "killed"
    loader = functools.partial(load_and_die_once, str(tiny_llama_dir), marker)
    options = RayOptions(actors=2)
    resumed = trace(loader, None, PROMPTS, out=out, max_new_tokens=4, batch_size=2, engine=RayEngine(options))
    assert marker.exists(), "an actor was killed"
    assert set(resumed.skipped) == before and not set(resumed.traced) & before and not resumed.failures
    assert len(resumed.skipped) + len(resumed.traced) == len(PROMPTS)
    assert sorted(resumed.skipped + resumed.traced) == sorted(read_trace(out).samples["sample_id"])
    assert_same_trace(local_reference, out)
    assert sorted(p.name for p in (out / "steps").iterdir()) == sorted(
        p.name for p in (out / "samples").iterdir()
    )


DYING_DRIVER = """
import json, os, sys
from evolens.models.load import load_model
from evolens.tracing import RayEngine, RayOptions, trace

args = json.loads(sys.argv[1])


def model_that_kills_its_actor():
    # the actor's process ends at once on the batch asking args["deadly"], as under the OOM killer
    loaded = load_model(args["model"])
    build_inputs = loaded.build_inputs

    def build_or_die(prompts, images):
        if args["deadly"] in prompts:
            os._exit(1)
        return build_inputs(prompts, images)

    loaded.build_inputs = build_or_die
    return loaded


options = RayOptions(address=args["address"], actors=2, max_retries=1, max_restarts=1)
result = trace(model_that_kills_its_actor, None, args["prompts"], out=args["out"], max_new_tokens=4,
               batch_size=2, engine=RayEngine(options))
print(json.dumps({"traced": result.traced, "failures": result.failures}))
"""


@pytest.mark.slow
def test_a_batch_that_kills_its_actor_every_time_fails_alone_within_the_retries(
    ray_cluster: str, tiny_llama_dir: Path, tmp_path: Path
) -> None:
    """The driver runs in a subprocess with a deadline: without bounded retries it never ends."""
    out = tmp_path / "trace"
    args = {
        "model": str(tiny_llama_dir),
        "prompts": PROMPTS,
        "out": str(out),
        "address": ray_cluster,
        "deadly": PROMPTS[3],  # batches of 2: PROMPTS[2:4] is the batch that dies
    }
    run = subprocess.run(
        [sys.executable, "-c", DYING_DRIVER, json.dumps(args)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.splitlines()[-1])
    doomed = {prompt_id(p) for p in PROMPTS[2:4]}
    assert {f["sample_id"] for f in result["failures"]} == doomed
    for failure in result["failures"]:  # max_retries=1: traced twice, died twice
        assert failure["error"].startswith(
            f"the actor tracing this batch died 2 times (node {socket.gethostname()}): out of memory"
        ), failure
    assert sorted(result["traced"]) == sorted(prompt_id(p) for p in PROMPTS if prompt_id(p) not in doomed)
    assert read_failures(out) == result["failures"]
    assert finished_sample_ids(out) == set(result["traced"])
    assert not (out / "ray").exists()


def test_an_output_folder_the_actors_do_not_see_is_refused_in_one_line(
    ray_cluster: str,
    tiny_llama_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The driver's marker is not where the actors look, as on a node whose DIR is a folder of its own."""
    monkeypatch.setattr(ray_engine, "write_marker", lambda path, token: path)
    out = tmp_path / "t"
    ray_flags = ["--engine", "ray", "--ray-address", ray_cluster]
    code = main(["trace", "--model", str(tiny_llama_dir), "--prompt", "Hi", "--out", str(out), *ray_flags])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("evolens:")]
    assert code == 2 and errors == [
        f"evolens: error: the output folder {out.absolute()} is not shared between the driver and node "
        f"{socket.gethostname()} (actors must write where the driver reads: use shared storage, see "
        "docs/scale-out.md)"
    ], errors
    assert not finished_sample_ids(out)


def test_user_errors_from_the_cluster_are_one_line(ray_cluster: str, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"^unknown model 'no-such-model'"):
        trace("no-such-model", None, "Hello?", out=tmp_path / "t", engine=RayEngine(RayOptions()))
    with pytest.raises(UsageError, match="the Ray cluster has 4 CPUs; 4 actors x 1 CPUs"):
        trace("demo-text", None, "Hello?", out=tmp_path / "t", engine=RayEngine(RayOptions(actors=4)))
    with pytest.raises(UsageError, match="GPUs"):
        trace("demo-text", None, "Hello?", out=tmp_path / "t", device="cuda", engine=RayEngine(RayOptions()))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--actors", "2"],
            "--ray-address, --actors, --gpus-per-actor, --cpus-per-actor, --max-retries, --max-restarts need "
            "--engine ray",
        ),
        (["--max-retries", "1"], "--max-restarts need --engine ray"),
        (["--engine", "spark"], "--engine spark: use one of local, ray"),
        (["--engine", "ray", "--actors", "0"], "actors: input should be greater than or equal to 1 (got 0)"),
        (["--engine", "ray", "--cpus-per-actor", "0"], "cpus_per_actor: input should be greater than 0"),
        (
            ["--engine", "ray", "--max-retries", "-1"],
            "max_retries: input should be greater than or equal to 0",
        ),
        (
            ["--engine", "ray", "--max-restarts", "-1"],
            "max_restarts: input should be greater than or equal to 0",
        ),
        (["--engine", "ray", "--device", "cuda:1"], "with the Ray engine use --device cuda"),
        (["--engine", "ray", "--gpus-per-actor", "1"], "--gpus-per-actor 1 needs --device cuda"),
    ],
)
def test_cli_ray_flags_are_checked_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str], message: str
) -> None:
    code = main(["trace", "--model", "demo-text", "--prompt", "Hi", "--out", str(tmp_path / "t"), *flags])
    error = capsys.readouterr().err.strip()
    assert code == 2 and message in error and len(error.splitlines()) == 1, error
    assert not (tmp_path / "t").exists()
