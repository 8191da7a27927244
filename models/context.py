"""The models of one run, loaded lazily: what a method gets as its `models` argument.

A method in `ops/` never loads a model; it reads `models.pipeline`,
`models.joint_clip` or `models.captioner` from the object it is given, and the
first read loads that model (cached per process by `models.loaders`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from models.profiles import Profile, get_profile


@dataclass
class ModelContext:
    """A profile's models, loaded on first use."""

    profile_name: str = "toy"
    device: str | None = None  # None → cuda if available, else cpu

    @cached_property
    def profile(self) -> Profile:
        return get_profile(self.profile_name)

    @cached_property
    def weights_key(self) -> str:
        """The profile and the version of each model a method reads (`models.loaders.weights_key`): part
        of every cache key of an intermediate and of a generated B′."""
        from models.loaders import weights_key

        return weights_key(self.profile)

    @property
    def pipeline(self):
        """The profile's diffusers pipeline (DDIM scheduler, frozen)."""
        from models.loaders import load_pipeline

        return load_pipeline(self.profile, self.device)

    @property
    def editor(self):
        """The profile's instruction editor (an InstructPix2Pix pipeline, its own scheduler), frozen."""
        from models.loaders import load_editor

        return load_editor(self.profile, self.device)

    @property
    def inpainter(self):
        """The profile's inpainter (an inpainting pipeline, 9-channel UNet), frozen."""
        from models.loaders import load_inpainter

        return load_inpainter(self.profile, self.device)

    @property
    def prompter(self):
        """Analogist's prompter (a VLM), or None where the profile has none (the toy world)."""
        from models.loaders import load_prompter

        return load_prompter(self.profile, self.device)

    @property
    def editor_clip(self):
        """The CLIP of the editor's text encoder (VISII's CLIP loss)."""
        from models.loaders import load_clip

        if self.profile.editor_clip is None:
            raise ValueError(f"profile {self.profile.name!r} has no instruction editor")
        return load_clip(self.profile.editor_clip, self.device)

    @property
    def joint_clip(self):
        """The CLIP whose text tower shares the diffusion text encoder's token table."""
        from models.loaders import load_clip

        return load_clip(self.profile.joint_clip, self.device)

    @property
    def captioner(self):
        from models.loaders import load_captioner

        return load_captioner(self.profile)
