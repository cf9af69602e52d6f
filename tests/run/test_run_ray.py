"""``engine: ray`` in ``evolens run``: the config keys, and a run whose trace stage starts its own local Ray
cluster, traces on it, and shuts it down, with the same trace as the local engine."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from evolens.cli import main
from evolens.errors import UsageError
from evolens.pipeline.config import load_config
from tests.ray_support import assert_same_trace, descendants, running
from tests.run.conftest import tiny_run_config

pytestmark = pytest.mark.xdist_group("ray")


def test_engine_and_ray_keys(tmp_path: Path) -> None:
    config_file = tmp_path / "run.yaml"
    config_file.write_text(
        "data: {source: shapes}\nengine: ray\nray: {actors: 3, gpus_per_actor: 0.5, max_retries: 1}\n"
    )
    config = load_config(config_file)
    assert config.engine == "ray" and config.ray.actors == 3 and config.ray.gpus_per_actor == 0.5
    assert config.ray.max_retries == 1 and config.ray.max_restarts == 3
    assert config.ray.address is None and config.ray.cpus_per_actor == 1.0
    assert load_config(None, {"data.source": "shapes"}).engine == "local"
    assert config.fingerprint("trace") == load_config(None, {"data.source": "shapes"}).fingerprint("trace")
    for text, message in [
        ("engine: spark\n", r"engine: input should be 'local' or 'ray'"),
        ("ray: {actors: 0}\n", r"ray\.actors: input should be greater than or equal to 1"),
        ("ray: {cpus_per_actor: 0}\n", r"ray\.cpus_per_actor: input should be greater than 0"),
        ("ray: {max_retries: -1}\n", r"ray\.max_retries: input should be greater than or equal to 0"),
        ("ray: {actor: 2}\n", r"ray\.actor: unknown key \(did you mean 'actors'\?\)"),
    ]:
        config_file.write_text("data: {source: shapes}\n" + text)
        with pytest.raises(UsageError, match=message):
            load_config(config_file)


@pytest.mark.slow
def test_run_traced_on_ray_equals_the_local_run_and_leaves_no_ray_process(
    tiny_vlm_dir: Path, shapes_images: Path, reference_run: Path, tmp_path: Path
) -> None:
    """The run on Ray renders the same shapes scenes into the same folder as the local ``reference_run``
    (one torch thread, as each actor with one CPU), so its trace must be the same, image paths included."""
    ray_config = tmp_path / "ray.yaml"
    config_text = tiny_run_config(tiny_vlm_dir, tmp_path / "ray", shapes_images)
    ray_config.write_text(config_text + "engine: ray\nray: {actors: 2}\n")
    before = descendants(os.getpid())
    assert main(["run", "--config", str(ray_config), "--quiet"]) == 0
    assert_same_trace(reference_run / "trace", tmp_path / "ray" / "trace")
    assert (tmp_path / "ray" / "report.html").is_file()
    deadline = time.monotonic() + 60
    while (
        left := {p for p in descendants(os.getpid()) - before if running(p)}
    ) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"the run left Ray processes behind: {sorted(left)}"
    # the engine is not part of what was traced: the other engine finds the run done
    ray_config.write_text(config_text)
    assert main(["run", "--config", str(ray_config), "--quiet"]) == 0
