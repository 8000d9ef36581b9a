"""Samplers: diffusers schedulers built from the model's training noise schedule."""

from __future__ import annotations

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
)

# Deterministic (ODE) samplers first, then stochastic ones, which add fresh noise at every step.
SCHEDULERS = {
    "dpm++": DPMSolverMultistepScheduler,
    "ddim": DDIMScheduler,
    "euler": EulerDiscreteScheduler,
    "dpm++sde": DPMSolverMultistepScheduler,
    "euler-a": EulerAncestralDiscreteScheduler,
    "ddpm": DDPMScheduler,
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
        "dpm++sde": "dpm++sde",
        "dpmppsde": "dpm++sde",
        "ddim": "ddim",
        "ddpm": "ddpm",
        "euler": "euler",
        "eulera": "euler-a",
        "eulerancestral": "euler-a",
    }
    if key not in aliases:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    name = aliases[key]
    scheduler_class = SCHEDULERS[name]
    extra = {"timestep_spacing": "trailing"}
    if scheduler_class is DPMSolverMultistepScheduler:
        extra["algorithm_type"] = "sde-dpmsolver++" if name == "dpm++sde" else "dpmsolver++"
    return scheduler_class.from_config(training_scheduler.config, **extra)
