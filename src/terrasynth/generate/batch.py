"""Generating whole sets: one image per layout of a paired-tiles split, or N images per scene class.

Outputs are cached: a file that already exists is not generated again, so an interrupted run continues and
benchmarks that share a generated set pay for it once. Each file carries its provenance like any other, and the
invisible watermark unless ``watermark=False`` (detector benchmarks train on unmarked sets, so the detector cannot
learn the watermark instead of the generator's fingerprint), and signed C2PA Content Credentials with a ``signer``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm.auto import tqdm

from ..data.captions import scene_paraphrases
from ..data.layouts import Layout
from .content_credentials import SignerConfig, load_credentials
from .outputs import provenance_records, write_generated
from .sampling import LoadedGenerator, Sampling, check_sampling

log = logging.getLogger(__name__)


def generate_for_layouts(
    pipeline_bundle: LoadedGenerator | tuple,
    dataset,
    out_dir: str | Path,
    sampling: Sampling = Sampling(),
    images_per_layout: int = 1,
    seed: int = 0,
    progress: bool = True,
    watermark: bool = True,
    indices: list[int] | None = None,
    signer: SignerConfig | None = None,
) -> list[Path]:
    """For each sample of a paired dataset (or those at ``indices``): ``out_dir/<id>-000.png`` … generated from
    its layout and caption.

    ``pipeline_bundle`` is ``(generator, model_id, model_sha256)`` as returned by ``generate.api.load_pipeline``.
    Image k of the sample at index i uses seed ``seed + 1000 * i + k``, so a set is reproducible file by file.
    """
    generator, model_id, model_sha = pipeline_bundle
    check_sampling(generator, sampling)
    sampling = sampling.resolve(generator)
    if signer is not None:
        load_credentials(signer)  # a bad certificate or key fails now, not after sampling
    out_dir = Path(out_dir)
    written = []
    chosen = range(len(dataset)) if indices is None else [int(i) for i in indices]
    for index in tqdm(chosen, disable=not progress, desc="generating for layouts"):
        sample_id = dataset.ids[index]
        stem = sample_id.replace("/", "_")
        targets = [out_dir / f"{stem}-{k:03d}.png" for k in range(images_per_layout)]
        if all(t.exists() for t in targets):
            written += targets
            continue
        sample = dataset[index]
        layout = Layout(sample["layout"], dataset.class_table, None, f"{getattr(dataset, 'root', '')}:{sample_id}")
        seeds = [seed + 1000 * index + k for k in range(images_per_layout)]
        output = generator.sample([sample["caption"]] * images_per_layout, sample["layout"], sampling, seeds)
        records = provenance_records(output, model_id, model_sha, sampling, layout)
        written += write_generated(output.images, records, out_dir, stem, None, watermark=watermark, signer=signer)
    return written


def generate_for_scene_classes(
    pipeline_bundle: LoadedGenerator | tuple,
    class_names: list[str],
    out_dir: str | Path,
    images_per_class: int,
    sampling: Sampling = Sampling(),
    seed: int = 0,
    size: int = 256,
    batch_size: int = 8,
    progress: bool = True,
    watermark: bool = True,
    signer: SignerConfig | None = None,
) -> Path:
    """``out_dir/<class>/<class>-NNN.png``: a scene-folder set (readable by ``SceneFolder``) generated from the
    class name's caption paraphrases, cycling through them."""
    generator, model_id, model_sha = pipeline_bundle
    check_sampling(generator, sampling)
    sampling = sampling.resolve(generator)
    if signer is not None:
        load_credentials(signer)
    out_dir = Path(out_dir)
    bar = tqdm(total=len(class_names) * images_per_class, disable=not progress, desc="generating scenes")
    for class_index, name in enumerate(class_names):
        prompts = scene_paraphrases(name)
        for start in range(0, images_per_class, batch_size):
            count = min(batch_size, images_per_class - start)
            # Files are numbered by image; a batch is skipped only when all its files exist.
            stems = [out_dir / name / f"{name}-{start + k:03d}.png" for k in range(count)]
            if all(p.exists() for p in stems):
                bar.update(count)
                continue
            batch_prompts = [prompts[(start + k) % len(prompts)] for k in range(count)]
            seeds = [seed + 100000 * class_index + start + k for k in range(count)]
            output = generator.sample(
                batch_prompts, None, sampling, seeds, height=size, width=size, batch_size=batch_size
            )
            records = provenance_records(output, model_id, model_sha, sampling, None)
            names = [p.stem for p in stems]
            write_generated(output.images, records, out_dir / name, names=names, watermark=watermark, signer=signer)
            bar.update(count)
    bar.close()
    return out_dir
