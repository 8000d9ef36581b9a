"""``Sampling`` checks its options; the three generators meet the ``Generator`` protocol; an option a generator
does not take is refused in one place, naming the flag; provenance records exactly the options changed."""

from __future__ import annotations

import dataclasses

import pytest
from tests.fake_models import FakeTextEncoder, tiny_model

from terrasynth.errors import InputError
from terrasynth.generate.pipeline import LayoutToImagePipeline
from terrasynth.generate.pix2pix_generator import Pix2PixGenerator
from terrasynth.generate.sampling import Generator, Sampling, check_sampling, sampling_extra
from terrasynth.generate.sd_pipeline import StableDiffusionGenerator


@pytest.mark.parametrize(
    ("changes", "flag"),
    [
        ({"steps": 0}, "--steps"),
        ({"steps": 2.5}, "--steps"),
        ({"scheduler": "nope"}, "--scheduler"),
        ({"guidance_interval": (0.7, 0.2)}, "--guidance-interval"),
        ({"guidance_rescale": 1.5}, "--guidance-rescale"),
        ({"strength": 0}, "--strength"),
    ],
)
def test_bad_options_are_input_errors_naming_the_flag(changes, flag):
    with pytest.raises(InputError, match=flag):
        Sampling(**changes)


def test_provenance_records_only_the_options_changed_beyond_the_record_fields():
    assert sampling_extra(Sampling()) == {}
    assert sampling_extra(Sampling(steps=5, guidance_scale=3, scheduler="DDIM")) == {}  # the record has fields
    changed = Sampling(guidance_interval=(0.5, 1), guidance_rescale=0.7, use_mean_prior=False)
    assert sampling_extra(changed) == {
        "guidance_interval": [0.5, 1.0],
        "guidance_rescale": 0.7,
        "use_mean_prior": False,
    }
    assert Sampling(scheduler="dpm_solver").scheduler == "dpm++"  # aliases resolve to one name


def test_resolve_fills_the_generators_defaults_only_where_unset():
    pipeline = LayoutToImagePipeline(tiny_model(), text_encoder=FakeTextEncoder())
    resolved = Sampling().resolve(pipeline)
    assert (resolved.steps, resolved.guidance_scale) == (pipeline.default_steps, pipeline.default_guidance_scale)
    assert Sampling(steps=3, guidance_scale=1.5).resolve(pipeline) == Sampling(steps=3, guidance_scale=1.5)


def test_the_three_generators_meet_the_protocol_and_name_their_options():
    embedded = LayoutToImagePipeline(tiny_model(), text_encoder=FakeTextEncoder())
    assert isinstance(embedded, Generator) and embedded.layout_classes is not None
    for kind in (Pix2PixGenerator, StableDiffusionGenerator):
        hints = {name for name in dir(kind) if not name.startswith("_")}
        assert {"sample", "to", "default_steps", "default_guidance_scale", "sampling_options"} <= hints, kind
    assert Pix2PixGenerator.sampling_options == frozenset()
    fields = {f.name for f in dataclasses.fields(Sampling)}
    assert embedded.sampling_options <= fields


class TakesNothing:
    """A generator with no option beyond steps, guidance and scheduler (as pix2pix)."""

    name = "pix2pix"
    layout_classes = None
    default_steps = 1
    default_guidance_scale = 1.0
    sampling_options = frozenset()


@pytest.mark.parametrize(
    ("changes", "flag"),
    [
        ({"guidance_interval": (0.5, 1)}, "--guidance-interval"),
        ({"guidance_rescale": 0.5}, "--guidance-rescale"),
        ({"use_mean_prior": False}, "--no-mean-prior"),
    ],
)
def test_an_option_the_generator_does_not_take_is_refused_naming_it(changes, flag):
    check_sampling(TakesNothing(), Sampling(steps=4, guidance_scale=2.0, scheduler="ddim"))  # every generator's
    with pytest.raises(InputError, match=f"pix2pix has no .*{flag}"):
        check_sampling(TakesNothing(), Sampling(**changes))
    with pytest.raises(InputError, match="--init-image needs an embedded model"):
        check_sampling(TakesNothing(), Sampling(), init_image="tile.png")
