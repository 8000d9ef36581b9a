"""Training checkpoints: a save → load round trip restores model, optimizer and RNG; rotation; atomicity."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from tests.fake_models import state_dicts_equal

from terrasynth.errors import InputError
from terrasynth.train.checkpoints import (
    list_checkpoints,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from terrasynth.train.run import TrainingRun, read_metrics, step_generator, step_seed


def tiny_net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.SiLU(), torch.nn.Linear(8, 2))


def train_steps(model, optimizer, steps: int) -> None:
    for _ in range(steps):
        loss = model(torch.randn(5, 4)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_round_trip_restores_model_optimizer_and_rng(tmp_path):
    model = tiny_net(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train_steps(model, optimizer, 3)
    saved_weights = {k: v.clone() for k, v in model.state_dict().items()}
    saved_moments = {k: v.clone() for k, v in optimizer.state[next(model.parameters())].items()}
    checkpoint = save_checkpoint(tmp_path, 3, {"model": model}, optimizer, extra={"note": "hello"})
    after_save = torch.rand(4)

    restored = tiny_net(1)  # different initial weights
    restored_optimizer = torch.optim.AdamW(restored.parameters(), lr=1e-2)
    state = load_checkpoint(checkpoint, {"model": restored}, restored_optimizer)

    assert state["step"] == 3 and state["note"] == "hello"
    assert torch.equal(torch.rand(4), after_save)
    assert state_dicts_equal(restored.state_dict(), saved_weights)
    assert state_dicts_equal(restored_optimizer.state[next(restored.parameters())], saved_moments)
    assert restored_optimizer.param_groups[0]["lr"] == 1e-2


def test_rng_after_load_equals_rng_after_save(tmp_path):
    model = tiny_net(0)
    checkpoint = save_checkpoint(tmp_path, 1, {"model": model}, None)
    expected = (torch.rand(4), random.random(), np.random.rand())
    torch.rand(100), random.random(), np.random.rand(7)  # advance every generator
    load_checkpoint(checkpoint, {"model": model})
    assert torch.equal(torch.rand(4), expected[0])
    assert random.random() == expected[1]
    assert np.random.rand() == expected[2]


def test_restored_optimizer_continues_identically(tmp_path):
    model = tiny_net(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train_steps(model, optimizer, 3)
    checkpoint = save_checkpoint(tmp_path, 3, {"model": model}, optimizer)
    train_steps(model, optimizer, 2)
    continued = model.state_dict()

    restored = tiny_net(1)
    restored_optimizer = torch.optim.AdamW(restored.parameters(), lr=1e-2)
    load_checkpoint(checkpoint, {"model": restored}, restored_optimizer)
    train_steps(restored, restored_optimizer, 2)
    assert state_dicts_equal(restored.state_dict(), continued)


def test_several_named_optimizers(tmp_path):
    generator, critic = tiny_net(0), tiny_net(1)
    optimizers = {
        "optimizer": torch.optim.AdamW(generator.parameters()),
        "critic-optimizer": torch.optim.SGD(critic.parameters(), lr=0.1, momentum=0.9),
    }
    train_steps(generator, optimizers["optimizer"], 1)
    train_steps(critic, optimizers["critic-optimizer"], 1)
    checkpoint = save_checkpoint(tmp_path, 1, {"generator": generator, "critic": critic}, optimizers)
    assert {"optimizer.safetensors", "critic-optimizer.safetensors"} <= {p.name for p in checkpoint.iterdir()}

    fresh = {
        "optimizer": torch.optim.AdamW(tiny_net(2).parameters()),
        "critic-optimizer": torch.optim.SGD(tiny_net(3).parameters(), lr=0.1, momentum=0.9),
    }
    load_checkpoint(checkpoint, {}, fresh)
    for name, optimizer in optimizers.items():
        saved, loaded = optimizer.state_dict()["state"], fresh[name].state_dict()["state"]
        assert saved.keys() == loaded.keys()
        for index in saved:
            assert state_dicts_equal(
                {k: torch.as_tensor(v) for k, v in saved[index].items()},
                {k: torch.as_tensor(v) for k, v in loaded[index].items()},
            )


def test_no_pickle_in_a_checkpoint(tmp_path):
    model = tiny_net(0)
    optimizer = torch.optim.AdamW(model.parameters())
    train_steps(model, optimizer, 1)
    checkpoint = save_checkpoint(tmp_path, 1, {"model": model}, optimizer)
    suffixes = {p.suffix for p in checkpoint.iterdir()}
    assert suffixes == {".safetensors", ".json"}
    json.loads((checkpoint / "state.json").read_text())


def test_rotation_keeps_the_last_k(tmp_path):
    model = tiny_net(0)
    for step in (10, 20, 30, 40, 50):
        save_checkpoint(tmp_path, step, {"model": model}, None, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-40", "checkpoint-50"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-40", "checkpoint-50"]


def test_steps_sort_as_numbers_not_text(tmp_path):
    model = tiny_net(0)
    for step in (9, 10, 100):
        save_checkpoint(tmp_path, step, {"model": model}, None, keep=0)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-9", "checkpoint-10", "checkpoint-100"]
    assert resolve_checkpoint(tmp_path, "latest").name == "checkpoint-100"


def test_incomplete_checkpoint_is_ignored_by_latest(tmp_path):
    model = tiny_net(0)
    save_checkpoint(tmp_path, 2, {"model": model}, None)
    save_checkpoint(tmp_path, 4, {"model": model}, None)
    (tmp_path / "checkpoint-4" / "state.json").unlink()  # killed before state.json was written
    (tmp_path / ".checkpoint-6.partial").mkdir()  # killed while staging
    assert resolve_checkpoint(tmp_path, "latest").name == "checkpoint-2"
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-2"]


def test_resolve_checkpoint(tmp_path):
    assert resolve_checkpoint(tmp_path, None) is None
    assert resolve_checkpoint(tmp_path, "latest") is None  # nothing yet: start from step 0
    assert resolve_checkpoint(tmp_path / "missing", "latest") is None
    (tmp_path / "checkpoint-3").mkdir()
    with pytest.raises(InputError, match="checkpoint-3"):
        resolve_checkpoint(tmp_path, str(tmp_path / "checkpoint-3"))


def test_checkpoint_without_weights_for_a_model_names_the_file(tmp_path):
    checkpoint = save_checkpoint(tmp_path, 1, {"model": tiny_net(0)}, None)
    with pytest.raises(InputError, match="ema.safetensors"):
        load_checkpoint(checkpoint, {"ema": tiny_net(0)})


def test_resume_drops_metrics_logged_after_the_checkpoint(tmp_path):
    run = TrainingRun(tmp_path / "run", {"lr": 1.0})
    model = tiny_net(0)
    for step in range(1, 6):
        run.log_metrics(step, loss=1.0 / step)
        if step == 3:
            run.checkpoint(step, {"model": model}, None, {"running_loss": 0.5})
    with open(run.metrics_path, "a") as handle:
        handle.write('{"step": 6, "lo')  # the kill cut the last line short

    resumed = TrainingRun(tmp_path / "run", {"lr": 1.0})
    assert resumed.resume("latest", {"model": model}, None) == 3
    assert resumed.resumed_state["running_loss"] == 0.5
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1, 2, 3]


def test_resume_removes_what_a_killed_run_left_and_logs_it(tmp_path, caplog):
    run = TrainingRun(tmp_path / "run", {"lr": 1.0})
    model = tiny_net(0)
    run.checkpoint(3, {"model": model}, None)
    partial = tmp_path / "run" / ".checkpoint-6.partial"  # killed while staging checkpoint 6
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"x" * 1000)
    temporary = tmp_path / "run" / "samples" / ".step-6.png.abc123.tmp"  # killed inside an atomic write
    temporary.parent.mkdir()
    temporary.write_bytes(b"y" * 10)
    kept = [tmp_path / "run" / "samples" / "step-3.png", tmp_path / "run" / "notes.tmp"]  # not ours: not hidden
    for path in kept:
        path.write_bytes(b"z")

    resumed = TrainingRun(tmp_path / "run", {"lr": 1.0})
    with caplog.at_level("WARNING", logger="terrasynth.train.checkpoints"):
        assert resumed.resume("latest", {"model": model}, None) == 3
    assert not partial.exists() and not temporary.exists()
    assert all(path.exists() for path in kept) and (tmp_path / "run" / "checkpoint-3" / "state.json").is_file()
    removed = [r.getMessage() for r in caplog.records if "interrupted run" in r.getMessage()]
    assert len(removed) == 2 and any(".checkpoint-6.partial" in m for m in removed)


def test_restart_before_the_first_checkpoint_drops_its_metrics(tmp_path):
    run = TrainingRun(tmp_path / "run", {"lr": 1.0})
    run.log_metrics(1, loss=1.0)
    run.log_metrics(2, loss=0.5)  # killed here, before checkpoint-5
    restarted = TrainingRun(tmp_path / "run", {"lr": 1.0})
    assert restarted.resume("latest", {"model": tiny_net(0)}, None) == 0
    restarted.log_metrics(1, loss=1.0)
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1]


def test_step_seeds_depend_only_on_their_keys():
    assert step_seed(0, 5) == step_seed(0, 5)
    seeds = {step_seed(seed, stream, step) for seed in range(3) for stream in range(3) for step in range(50)}
    assert len(seeds) == 3 * 3 * 50
    assert torch.equal(torch.rand(3, generator=step_generator(1, 2)), torch.rand(3, generator=step_generator(1, 2)))


def test_a_fresh_run_into_a_folder_with_checkpoints_is_refused(tmp_path):
    import torch

    from terrasynth.errors import InputError
    from terrasynth.train.run import TrainingRun

    model = torch.nn.Linear(2, 2)
    run = TrainingRun(tmp_path / "run", {"a": 1})
    run.checkpoint(3, {"model": model}, None)
    with pytest.raises(InputError, match="already holds checkpoints"):
        TrainingRun(tmp_path / "run", {"a": 1}).resume(None, {"model": model}, None)
    assert TrainingRun(tmp_path / "run", {"a": 1}).resume("latest", {"model": model}, None) == 3


def test_a_refused_run_leaves_the_old_config_alone(tmp_path):
    import torch

    from terrasynth.errors import InputError
    from terrasynth.train.run import TrainingRun

    model = torch.nn.Linear(2, 2)
    run = TrainingRun(tmp_path / "run", {"a": 1})
    run.resume(None, {"model": model}, None)
    run.checkpoint(3, {"model": model}, None)
    with pytest.raises(InputError):
        TrainingRun(tmp_path / "run", {"a": 2}).resume(None, {"model": model}, None)
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == {"a": 1}


def test_ema_follows_its_model_to_another_device():
    # train_diffusion makes the EMA before accelerate moves the model to the GPU; "meta" stands in for it here
    from terrasynth.train.run import EMA

    model = torch.nn.Linear(3, 2)
    ema = EMA(model, 0.9)
    moved = torch.nn.Linear(3, 2).to("meta")
    ema.update(moved, step=0)
    assert all(p.device.type == "meta" for p in ema.model.parameters())
