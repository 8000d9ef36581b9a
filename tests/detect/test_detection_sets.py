"""benchmarks/detection_sets.py: the side of a tile follows its block of neighbours, not the tile alone."""

from tests.benchmark_scripts import load_benchmark


def test_neighbouring_tiles_share_a_side_and_blocks_are_split():
    sets = load_benchmark("detection_sets")
    # tiles cut from one scene have consecutive ids: a block of 32 lies on one side
    for block in range(20):
        sides = {sets.side_of(f"{block * 32 + i:04d}", seed=0) for i in range(32)}
        assert len(sides) == 1
        assert {sets.side_of(f"field/b{block * 32 + i:03d}", seed=0) for i in range(32)} != {"a", "b"}
    blocks = [sets.side_of(f"{block * 32:04d}", seed=0) for block in range(200)]
    assert 60 < blocks.count("a") < 140  # both sides get about half of the blocks
    # the seed moves blocks between sides
    assert blocks != [sets.side_of(f"{block * 32:04d}", seed=1) for block in range(200)]


def test_small_autoencoders_train_once_and_round_trip_tiles(tmp_path):
    """The smallae family: each design trains on real tiles, keeps its weights with its config, and a second call
    with the same config loads them instead of training again; a round trip keeps the tile's size and looks like
    it more than noise does."""
    import dataclasses

    import numpy as np
    import torch

    small = load_benchmark("small_autoencoders")
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 48)
    tiles = [np.clip(ramp[:, None, None] + rng.normal(0, 10, (48, 48, 3)), 0, 255).astype(np.uint8) for _ in range(4)]
    for design in small.DESIGNS:
        config = dataclasses.replace(design, steps=30, batch_size=2, crop=32, width=8)
        model = small.train_small_autoencoder(config, tiles, tmp_path / design.name)
        out = small.small_round_trip(model, tiles[0][:44, :44], 2**config.stages)
        factor = 2**config.stages
        assert out.shape == (44 // factor * factor, 44 // factor * factor, 3) and out.dtype == np.uint8
        assert (tmp_path / design.name / "weights.safetensors").is_file()
        # the same config loads the same weights; another config trains anew
        again = small.train_small_autoencoder(config, tiles, tmp_path / design.name)
        for a, b in zip(model.state_dict().values(), again.state_dict().values()):
            assert torch.equal(a, b)
    config = dataclasses.replace(small.DESIGNS[0], steps=200, batch_size=4, crop=32, width=16, learning_rate=5e-3)
    model = small.train_small_autoencoder(config, tiles, tmp_path / "longer")
    out = small.small_round_trip(model, tiles[1], 4).astype(float)
    source = tiles[1][: out.shape[0], : out.shape[1]].astype(float)
    assert np.abs(out - source).mean() < np.abs(source - source.mean()).mean()
    # each channel's mean and spread are the tile's, so colour is no cue
    assert np.allclose(out.mean((0, 1)), source.mean((0, 1)), atol=1.0)
    assert np.allclose(out.std((0, 1)), source.std((0, 1)), rtol=0.05)
