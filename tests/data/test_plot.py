import torch
from matplotlib.figure import Figure

from terrasynth.data.paired_tiles import PairedTiles
from terrasynth.data.plot import plot_sample
from terrasynth.data.scene_folder import SceneFolder


def test_paired_plot_shows_image_layout_and_prediction(paired_tiles_root, tmp_path):
    dataset = PairedTiles(paired_tiles_root, "all")
    sample = dataset[0]
    figure = dataset.plot(sample)
    assert isinstance(figure, Figure)
    assert [axis.get_title() for axis in figure.axes] == ["image", "layout"]
    figure = dataset.plot(sample, prediction=torch.rand(3, 32, 32), title="generated")
    assert [axis.get_title() for axis in figure.axes] == ["image", "layout", "prediction"]
    assert figure._suptitle.get_text() == "generated"
    figure.savefig(tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 0


def test_scene_plot_and_layout_prediction(scene_folder_root):
    dataset = SceneFolder(scene_folder_root, "all")
    figure = dataset.plot(dataset[0])
    assert isinstance(figure, Figure) and len(figure.axes) == 1
    assert figure._suptitle.get_text() == "aerial image of a forest"
    figure = plot_sample(dataset[0], None, prediction=torch.zeros(32, 32, dtype=torch.long))
    assert len(figure.axes) == 2
