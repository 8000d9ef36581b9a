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
