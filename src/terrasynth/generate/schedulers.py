"""Samplers: diffusers schedulers built from the model's training noise schedule."""

from __future__ import annotations

from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

SCHEDULERS = {
    "dpm++": DPMSolverMultistepScheduler,
    "ddim": DDIMScheduler,
    "ddpm": DDPMScheduler,
    "euler": EulerDiscreteScheduler,
}
DEFAULT_SCHEDULER = "dpm++"


def make_scheduler(name: str, training_scheduler: DDPMScheduler):
    """A sampler sharing the training schedule (betas, prediction type). "trailing" spacing makes every sampler
    start at the last training timestep (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps
    are Flawed"), so the first step sees the noise level the model was trained on."""
    key = name.lower().replace("_", "").replace("-", "").replace("solver", "")
    aliases = {
        "dpm": "dpm++",
        "dpm++": "dpm++",
        "dpmpp": "dpm++",
        "ddim": "ddim",
        "ddpm": "ddpm",
        "euler": "euler",
    }
    if key not in aliases:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    scheduler_class = SCHEDULERS[aliases[key]]
    extra = {"timestep_spacing": "trailing"}
    if scheduler_class is DPMSolverMultistepScheduler:
        extra["algorithm_type"] = "dpmsolver++"
    return scheduler_class.from_config(training_scheduler.config, **extra)
